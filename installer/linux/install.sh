#!/usr/bin/env bash
# f2f-cam setup for Linux: the v4l2loopback virtual camera "Face2Face Cam" (installed,
# configured for every boot, loaded now) and autostart at login (a systemd user
# service for the headless daemon, an XDG autostart entry for the tray).
# Idempotent; --dry-run changes nothing; --uninstall removes what this script wrote.
# Options and the exclusive_caps trade-off: installer/README.md, or --help.
set -euo pipefail

PROG=${0##*/}
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$PROG"
MARKER="Written by the f2f-cam installer"
CARD_LABEL="Face2Face Cam"
UNIT_NAME="f2f-cam.service"
RELOAD_HINT="sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback"

DRY_RUN=0 UNINSTALL=0 ROOT=/ USER_HOME="" NO_PACKAGES=0 NO_AUTOSTART=0 NO_TRAY=0 FORCED_PM=""
VIDEO_NR=10 EXCLUSIVE_CAPS=1 F2F_CAM="" SYSTEM_ONLY=0

# PROBE=1: run the steps silently, only to learn whether any would change something
# (NEEDS_CHANGE=1); used before asking sudo, so that a configured system needs no root.
PROBE=0 NEEDS_CHANGE=0 WROTE=0 REMOVED=0 FAILED="" TMP_FILE="" CONF_CHANGED=0 UNIT_CHANGED=0 PKG_MANAGER=""

# -- messages: one line each -------------------------------------------------------
say() { if [ "$PROBE" = 0 ]; then printf '%s\n' "$*"; fi; }
warn() { if [ "$PROBE" = 0 ]; then printf 'warning: %s\n' "$*" >&2; fi; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2; exit 2; }

usage() {
    cat <<EOF
Usage: $PROG [options]
Set up f2f-cam on Linux: install v4l2loopback, configure it for every boot as
/dev/video10 named "$CARD_LABEL", load it now, and start f2f-cam at login
(systemd user service + XDG autostart entry for the tray).

Options:
  --dry-run             print every action, change nothing
  --uninstall           remove what this script wrote and disable the service
                        (packages stay installed; it says how to remove them)
  --root DIR            prefix for every system file written (default /); when not /,
                        modprobe and systemctl are not run
  --user-home DIR       home folder for the user files (default \$HOME; under sudo,
                        the invoking user's home)
  --no-packages         do not install packages (apt-get, dnf or pacman)
  --no-autostart        do not write the systemd user service and autostart entry
  --no-tray             do not install what tray menus need (GTK 3, AppIndicator,
                        PyGObject in f2f-cam's Python)
  --package-manager PM  apt-get, dnf or pacman (default: the first one found)
  --video-nr N          device number: /dev/videoN (default 10, so the real webcam
                        keeps /dev/video0)
  --exclusive-caps 0|1  v4l2loopback exclusive_caps (default 1: what Chrome and Zoom
                        need; see installer/README.md)
  --f2f-cam PATH        the f2f-cam executable that autostart runs
                        (default: f2f-cam on PATH)
  -h, --help            show this help
EOF
}

# -- helpers -----------------------------------------------------------------------
sys_path() {  # system path under --root
    if [ "$ROOT" = / ]; then printf '%s' "$1"; else printf '%s%s' "${ROOT%/}" "$1"; fi
}

quote_cmd() {  # a command line as one readable, copy-pasteable string
    local out="" a
    for a in "$@"; do
        case $a in
            '' | *[!A-Za-z0-9_./=:,+@%-]*) a=$(printf '%q' "$a") ;;
        esac
        out+="${out:+ }$a"
    done
    printf '%s' "$out"
}

oneline() {  # file content as one line: its non-comment lines joined by " | "
    local out="" line
    while IFS= read -r line; do
        case $line in '' | '#'*) continue ;; esac
        out+="${out:+ | }$line"
    done <<<"$1"
    printf '%s' "$out"
}

is_root() { [ "$(id -u)" = 0 ]; }

# run_cmd CMD...: the one way this script changes the system through a command.
run_cmd() {
    NEEDS_CHANGE=1
    if [ "$PROBE" = 1 ]; then return 0; fi
    if [ "$DRY_RUN" = 1 ]; then say "would run: $(quote_cmd "$@")"; return 0; fi
    say "running: $(quote_cmd "$@")"
    "$@"
}

owner_of() {  # uid:gid of PATH, or of its nearest existing parent
    local p=$1
    while [ ! -e "$p" ]; do p=$(dirname "$p"); done
    stat -c '%u:%g' "$p"
}

make_dirs() {  # make_dirs DIR [OWNER]: create DIR and missing parents, each owned by OWNER
    local dir=$1 owner=${2:-} missing=() d
    d=$dir
    while [ ! -d "$d" ]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
    for d in "${missing[@]}"; do
        mkdir "$d" 2>/dev/null || die "cannot create $d (permission denied?)"
        if [ -n "$owner" ]; then chown "$owner" "$d"; fi
    done
}

# write_file PATH CONTENT [OWNER]: atomically (temp file + mv), only if the content differs.
# Sets WROTE=1 if the file was (or would be) written, WROTE=0 if it was already as wanted.
# (Results go through WROTE, not the return code, so that `set -e` stays in force here.)
write_file() {
    local dest=$1 content=$2 owner=${3:-} dir verb
    dir=$(dirname "$dest")
    WROTE=0
    if [ -f "$dest" ] && printf '%s' "$content" | cmp -s - "$dest"; then
        if [ -n "$owner" ] && [ "$(stat -c '%u:%g' "$dest")" != "$owner" ]; then
            NEEDS_CHANGE=1
            if [ "$PROBE" = 1 ]; then return; fi
            if [ "$DRY_RUN" = 1 ]; then say "would chown $owner $dest"; return; fi
            chown "$owner" "$dest"
            say "gave $dest back to its user ($owner)"
            return
        fi
        say "already configured: $dest"
        return
    fi
    verb="write"
    if [ -e "$dest" ]; then verb="update"; fi
    NEEDS_CHANGE=1 WROTE=1
    if [ "$PROBE" = 1 ]; then return; fi
    if [ "$DRY_RUN" = 1 ]; then
        if [ ! -d "$dir" ]; then say "would create directory $dir"; fi
        say "would $verb $dest: $(oneline "$content")"
        return
    fi
    make_dirs "$dir" "$owner"
    [ -w "$dir" ] || die "cannot write $dest (permission denied): run as root or choose another --root"
    TMP_FILE=$(mktemp "$dir/.${dest##*/}.XXXXXX")
    printf '%s' "$content" >"$TMP_FILE"
    chmod 0644 "$TMP_FILE"
    if [ -n "$owner" ]; then chown "$owner" "$TMP_FILE"; fi
    mv -f "$TMP_FILE" "$dest"
    TMP_FILE=""
    if [ "$verb" = write ]; then say "wrote $dest"; else say "updated $dest"; fi
}

# remove_file PATH: only a file this script wrote (it carries MARKER).
# Sets REMOVED=1 if the file was (or would be) removed, else REMOVED=0.
remove_file() {
    local dest=$1
    REMOVED=0
    if [ ! -e "$dest" ] && [ ! -L "$dest" ]; then say "already removed: $dest"; return; fi
    if ! grep -qF "$MARKER" "$dest" 2>/dev/null; then
        warn "left $dest in place: it was not written by this installer"
        return
    fi
    NEEDS_CHANGE=1 REMOVED=1
    if [ "$PROBE" = 1 ]; then return; fi
    if [ "$DRY_RUN" = 1 ]; then say "would remove $dest"; return; fi
    rm -f -- "$dest"
    say "removed $dest"
}

cleanup() { if [ -n "$TMP_FILE" ]; then rm -f -- "$TMP_FILE"; fi; }
trap cleanup EXIT

# -- options -----------------------------------------------------------------------
need_value() { if [ "$2" -lt 2 ]; then usage_error "$1 needs a value"; fi; }

while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --no-packages) NO_PACKAGES=1 ;;
        --no-autostart) NO_AUTOSTART=1 ;;
        --no-tray) NO_TRAY=1 ;;
        --system-only) SYSTEM_ONLY=1 ;;  # internal: the part re-run through sudo
        --root | --user-home | --video-nr | --exclusive-caps | --f2f-cam | --package-manager)
            need_value "$1" $#
            opt=$1 val=$2
            shift
            set -- "$opt=$val" "${@:2}"
            continue
            ;;
        --root=*) ROOT=${1#*=} ;;
        --user-home=*) USER_HOME=${1#*=} ;;
        --video-nr=*) VIDEO_NR=${1#*=} ;;
        --exclusive-caps=*) EXCLUSIVE_CAPS=${1#*=} ;;
        --f2f-cam=*) F2F_CAM=${1#*=} ;;
        --package-manager=*) FORCED_PM=${1#*=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown option: $1" ;;
    esac
    shift
done

case $VIDEO_NR in
    '' | *[!0-9]*) usage_error "--video-nr must be a number from 0 to 255, not '$VIDEO_NR'" ;;
esac
if [ "${#VIDEO_NR}" -gt 3 ] || [ "$((10#$VIDEO_NR))" -gt 255 ]; then
    usage_error "--video-nr must be a number from 0 to 255, not '$VIDEO_NR'"
fi
VIDEO_NR=$((10#$VIDEO_NR))
case $FORCED_PM in
    '' | apt-get | dnf | pacman) ;;
    *) usage_error "--package-manager must be apt-get, dnf or pacman, not '$FORCED_PM'" ;;
esac
case $EXCLUSIVE_CAPS in
    0 | 1) ;;
    *) usage_error "--exclusive-caps must be 0 or 1, not '$EXCLUSIVE_CAPS'" ;;
esac
[ -n "$ROOT" ] || usage_error "--root needs a folder"
case $ROOT in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
if [ "$ROOT" != / ]; then ROOT=${ROOT%/}; fi
[ -n "$ROOT" ] || ROOT=/
if [ "$ROOT" != / ] && [ ! -d "$ROOT" ]; then die "--root $ROOT is not a folder"; fi

MODULES_LOAD_CONF=$(sys_path /etc/modules-load.d/f2f-cam.conf)
MODPROBE_CONF=$(sys_path /etc/modprobe.d/f2f-cam.conf)

# -- system part: packages, module configuration, module loaded --------------------
detect_pm() {
    if [ -n "$FORCED_PM" ]; then PKG_MANAGER=$FORCED_PM
    elif command -v apt-get >/dev/null 2>&1; then PKG_MANAGER=apt-get
    elif command -v dnf >/dev/null 2>&1; then PKG_MANAGER=dnf
    elif command -v pacman >/dev/null 2>&1; then PKG_MANAGER=pacman
    else PKG_MANAGER=""
    fi
}

pm_packages() {  # the packages for PKG_MANAGER, one per line
    case $PKG_MANAGER in
        apt-get)
            printf '%s\n' v4l2loopback-dkms v4l2loopback-utils v4l-utils
            if apt-cache show "linux-headers-$(uname -r)" >/dev/null 2>&1; then
                printf '%s\n' "linux-headers-$(uname -r)"
            fi
            ;;
        dnf) printf '%s\n' v4l2loopback v4l-utils ;;
        pacman)
            printf '%s\n' v4l2loopback-dkms v4l-utils
            local base
            base="/usr/lib/modules/$(uname -r)/pkgbase"
            if [ -r "$base" ]; then printf '%s-headers\n' "$(cat "$base")"; fi
            ;;
    esac
    if [ "$NO_TRAY" = 0 ]; then tray_packages; fi
}

# What tray menus need: the GTK 3 and AppIndicator (Ayatana) typelibs, and what
# `pip install PyGObject` builds against (a C compiler, Python headers, cairo,
# gobject-introspection: girepository-1.0 on Debian 12 / Ubuntu 22.04, 2.0 where GLib
# is 2.80 or newer). Keep in step with f2f_cam/desktop.py (TRAY_PACKAGES).
tray_packages() {
    case $PKG_MANAGER in
        apt-get)
            printf '%s\n' pkg-config gcc python3-dev libcairo2-dev gir1.2-gtk-3.0
            if apt-cache show libgirepository-2.0-dev >/dev/null 2>&1; then
                printf '%s\n' libgirepository-2.0-dev
            else
                printf '%s\n' libgirepository1.0-dev
            fi
            if apt-cache show gir1.2-ayatanaappindicator3-0.1 >/dev/null 2>&1; then
                printf '%s\n' gir1.2-ayatanaappindicator3-0.1
            else
                printf '%s\n' gir1.2-appindicator3-0.1
            fi
            ;;
        dnf) printf '%s\n' pkgconf-pkg-config gcc python3-devel cairo-devel cairo-gobject-devel \
            gobject-introspection-devel gtk3 libayatana-appindicator-gtk3 ;;
        pacman) printf '%s\n' pkgconf gcc cairo gobject-introspection gtk3 libayatana-appindicator ;;
    esac
}

pm_installed() {
    case $PKG_MANAGER in
        apt-get) [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ] ;;
        dnf) rpm -q "$1" >/dev/null 2>&1 ;;
        pacman) pacman -Q "$1" >/dev/null 2>&1 ;;
    esac
}

packages_step() {
    if [ "$NO_PACKAGES" = 1 ]; then say "skip: packages (--no-packages)"; return; fi
    detect_pm
    if [ -z "$PKG_MANAGER" ]; then
        die "no supported package manager (apt-get, dnf, pacman): install v4l2loopback for your distribution, then rerun with --no-packages"
    fi
    local want=() missing=() p
    while IFS= read -r p; do want+=("$p"); done < <(pm_packages)
    if [ "$PKG_MANAGER" = apt-get ] && [ "${#want[@]}" -lt 4 ]; then
        warn "no linux-headers-$(uname -r) package found: DKMS needs the headers of the running kernel to build v4l2loopback, install them yourself"
    fi
    for p in "${want[@]}"; do
        if ! pm_installed "$p"; then missing+=("$p"); fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "already configured: packages installed (${want[*]})"
        return
    fi
    case $PKG_MANAGER in
        apt-get)
            export DEBIAN_FRONTEND=noninteractive
            run_cmd apt-get update || die "apt-get update failed (see above)"
            run_cmd apt-get install -y "${missing[@]}" \
                || die "apt-get install failed (see above): install ${missing[*]} yourself, then rerun with --no-packages"
            ;;
        dnf)
            say "note: v4l2loopback comes from RPM Fusion (free); if dnf cannot find it, enable it: https://rpmfusion.org/Configuration"
            run_cmd dnf install -y "${missing[@]}" \
                || die "dnf install failed: v4l2loopback is in RPM Fusion (free), enable it (https://rpmfusion.org/Configuration) and rerun"
            ;;
        pacman)
            run_cmd pacman -S --needed --noconfirm "${missing[@]}" \
                || die "pacman -S failed (see above): install ${missing[*]} yourself, then rerun with --no-packages"
            ;;
    esac
}

other_configs_step() {  # warn, never fail, about other v4l2loopback options
    local d f real seen=" " ours
    ours=$(readlink -f "$MODPROBE_CONF" || true)
    for d in /etc/modprobe.d /run/modprobe.d /usr/local/lib/modprobe.d /usr/lib/modprobe.d /lib/modprobe.d; do
        for f in "$(sys_path "$d")"/*.conf; do
            [ -f "$f" ] || continue
            real=$(readlink -f "$f")
            case $seen in *" $real "*) continue ;; esac
            seen+="$real "
            if [ "$real" = "$ours" ]; then continue; fi
            if grep -Eq '^[[:space:]]*options[[:space:]]+v4l2loopback([[:space:]]|$)' "$f"; then
                warn "$f also sets v4l2loopback options, which modprobe combines with f2f-cam's: check it, or remove its options line"
            fi
        done
    done
}

module_step() {
    if [ "$ROOT" != / ]; then
        say "skip: modprobe v4l2loopback (--root is not /; the module loads at that system's next boot)"
        return
    fi
    local name_file="/sys/devices/virtual/video4linux/video$VIDEO_NR/name" caps_file=/sys/module/v4l2loopback/parameters/exclusive_caps caps
    if [ -d /sys/module/v4l2loopback ]; then
        if [ -r "$name_file" ] && [ "$(cat "$name_file")" = "$CARD_LABEL" ] && [ "$CONF_CHANGED" = 0 ]; then
            caps=""
            if [ -r "$caps_file" ]; then caps=$(cut -d, -f1 <"$caps_file"); fi
            case $caps in Y | 1) caps=1 ;; N | 0) caps=0 ;; *) caps="" ;; esac
            if [ -n "$caps" ] && [ "$caps" != "$EXCLUSIVE_CAPS" ]; then
                warn "v4l2loopback is loaded with exclusive_caps=$caps, configured is $EXCLUSIVE_CAPS: reload it to apply (stop apps using the camera first): $RELOAD_HINT"
            else
                say "already configured: v4l2loopback loaded, /dev/video$VIDEO_NR is \"$CARD_LABEL\""
            fi
        else
            warn "v4l2loopback is already loaded with other options: reload it to apply f2f-cam's (stop apps using the camera first): $RELOAD_HINT"
        fi
        return
    fi
    if ! command -v modprobe >/dev/null 2>&1 && [ "$PROBE" = 0 ] && [ "$DRY_RUN" = 0 ]; then
        FAILED="modprobe not found (install kmod): v4l2loopback is configured but not loaded"
        return
    fi
    if ! run_cmd modprobe v4l2loopback; then
        if command -v mokutil >/dev/null 2>&1 && mokutil --sb-state 2>/dev/null | grep -q 'SecureBoot enabled'; then
            warn "Secure Boot is on: the DKMS-built v4l2loopback must be signed with an enrolled key (see installer/README.md, Secure Boot)"
        fi
        FAILED="modprobe v4l2loopback failed (module not built for kernel $(uname -r)? see installer/README.md); the configuration is in place for the next boot"
    fi
}

system_part() {
    local modules_load modprobe_opts
    modules_load="# $MARKER (installer/linux/install.sh); 'install.sh --uninstall' removes it.
# Load v4l2loopback at boot; its options are in /etc/modprobe.d/f2f-cam.conf.
v4l2loopback
"
    modprobe_opts="# $MARKER (installer/linux/install.sh); 'install.sh --uninstall' removes it.
# One loopback device, /dev/video$VIDEO_NR, named \"$CARD_LABEL\".
# exclusive_caps=1: Chrome/WebRTC and Zoom list it (as a capture device once f2f-cam writes
# to it); exclusive_caps=0: every app can open it, but Chrome and Zoom may not list it.
# Change with 'install.sh --exclusive-caps 0|1', then reload: $RELOAD_HINT
options v4l2loopback devices=1 video_nr=$VIDEO_NR card_label=\"$CARD_LABEL\" exclusive_caps=$EXCLUSIVE_CAPS
"
    packages_step
    write_file "$MODULES_LOAD_CONF" "$modules_load"
    write_file "$MODPROBE_CONF" "$modprobe_opts"
    CONF_CHANGED=$WROTE
    other_configs_step
    module_step
}

system_uninstall() {
    remove_file "$MODPROBE_CONF"
    remove_file "$MODULES_LOAD_CONF"
    if [ "$ROOT" = / ] && [ -d /sys/module/v4l2loopback ]; then
        say "note: v4l2loopback stays loaded until reboot; unload it now (stop apps using it first): sudo modprobe -r v4l2loopback"
    fi
}

# -- user part: systemd user service, XDG autostart --------------------------------
TARGET_USER=$(id -un)
if [ -z "$USER_HOME" ]; then
    if is_root && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        TARGET_USER=$SUDO_USER
        USER_HOME=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        CONFIG_HOME="$USER_HOME/.config"
    else
        USER_HOME=${HOME:?HOME is not set: pass --user-home}
        CONFIG_HOME=${XDG_CONFIG_HOME:-$USER_HOME/.config}
    fi
else
    case $USER_HOME in /*) ;; *) USER_HOME="$(pwd)/$USER_HOME" ;; esac
    CONFIG_HOME="$USER_HOME/.config"
fi
USER_HOME=${USER_HOME%/}
UNIT_FILE="$CONFIG_HOME/systemd/user/$UNIT_NAME"
DESKTOP_FILE="$CONFIG_HOME/autostart/f2f-cam.desktop"
USER_OWNER=""  # when root writes a user's files, they are given to the user who owns the home
if is_root; then USER_OWNER=$(owner_of "$USER_HOME"); fi

user_systemd_reason() {  # why `systemctl --user` is not run, or nothing if it is
    local real_home
    real_home=$(getent passwd "$TARGET_USER" | cut -d: -f6)
    if [ "$ROOT" != / ]; then echo "--root is not /"
    elif [ "$(readlink -f "$USER_HOME")" != "$(readlink -f "${real_home:-/nonexistent}")" ]; then echo "--user-home is not $TARGET_USER's home"
    elif ! command -v systemctl >/dev/null 2>&1 || [ ! -d /run/systemd/system ]; then echo "this system does not run systemd"
    fi
}

user_systemctl() {  # systemctl --user ARGS, as the target user
    if [ "$TARGET_USER" = "$(id -un)" ]; then
        systemctl --user "$@"
    else
        runuser -u "$TARGET_USER" -- env "XDG_RUNTIME_DIR=/run/user/$(id -u "$TARGET_USER")" systemctl --user "$@"
    fi
}

run_user_systemctl() {  # like run_cmd, for systemctl --user
    if [ "$TARGET_USER" = "$(id -un)" ]; then
        run_cmd systemctl --user "$@"
    else
        run_cmd runuser -u "$TARGET_USER" -- env "XDG_RUNTIME_DIR=/run/user/$(id -u "$TARGET_USER")" systemctl --user "$@"
    fi
}

exec_quote() {  # the executable for ExecStart= and Exec=: quoted if it has special characters
    case $1 in
        *[!A-Za-z0-9_./+@:,=-]*) printf '"%s"' "$1" ;;
        *) printf '%s' "$1" ;;
    esac
}

F2F_CAM_RESOLVED=0
resolve_f2f_cam() {
    if [ "$F2F_CAM_RESOLVED" = 1 ]; then return; fi
    F2F_CAM_RESOLVED=1
    if [ -z "$F2F_CAM" ]; then
        F2F_CAM=$(command -v f2f-cam || true)
        [ -n "$F2F_CAM" ] || die "f2f-cam is not on PATH: pass --f2f-cam /path/to/f2f-cam (e.g. your venv's bin/f2f-cam), or --no-autostart"
    fi
    case $F2F_CAM in /*) ;; *) F2F_CAM="$(pwd)/$F2F_CAM" ;; esac
    case $F2F_CAM in
        *[\"\\\`\$%]* | *[[:cntrl:]]*) die "--f2f-cam path has a character autostart files cannot hold (\" \\ \` \$ % or a control character): $F2F_CAM" ;;
    esac
    if [ ! -x "$F2F_CAM" ] || [ -d "$F2F_CAM" ]; then
        warn "$F2F_CAM is not an executable file (yet): autostart will fail until it is"
    fi
}

user_part() {
    if [ "$NO_AUTOSTART" = 1 ]; then say "skip: autostart (--no-autostart)"; return; fi
    resolve_f2f_cam
    local exe unit desktop reason state
    exe=$(exec_quote "$F2F_CAM")
    unit="# $MARKER (installer/linux/install.sh); 'install.sh --uninstall' removes it.
# The headless daemon; the tray is started by ~/.config/autostart/f2f-cam.desktop.
[Unit]
Description=f2f-cam: your persona as the \"$CARD_LABEL\" virtual camera
After=graphical-session.target
StartLimitIntervalSec=120
StartLimitBurst=5

[Service]
Type=simple
ExecStart=$exe run --no-tray
Restart=on-failure
RestartSec=5
# Exit status 3: another f2f-cam daemon (e.g. the tray from autostart) already runs for
# this user; one daemon per user is by design, so do not restart.
RestartPreventExitStatus=3

[Install]
WantedBy=default.target
"
    desktop="# $MARKER (installer/linux/install.sh); 'install.sh --uninstall' removes it.
[Desktop Entry]
Type=Application
Name=Face2Face Cam
Comment=f2f-cam tray: your persona as the \"$CARD_LABEL\" virtual camera
Exec=$exe run
Icon=camera-web
Terminal=false
Categories=AudioVideo;Video;
X-GNOME-Autostart-enabled=true
"
    write_file "$UNIT_FILE" "$unit" "$USER_OWNER"
    UNIT_CHANGED=$WROTE
    reason=$(user_systemd_reason)
    if [ -n "$reason" ]; then
        say "skip: systemctl --user enable $UNIT_NAME ($reason); enable it in that session with: systemctl --user enable $UNIT_NAME"
    else
        if [ "$UNIT_CHANGED" = 1 ]; then
            run_user_systemctl daemon-reload || warn "systemctl --user daemon-reload failed (no user session bus?)"
        fi
        state=$(user_systemctl is-enabled "$UNIT_NAME" 2>/dev/null || true)
        if [ "$state" = enabled ]; then
            say "already configured: $UNIT_NAME enabled"
        elif ! run_user_systemctl enable "$UNIT_NAME"; then
            warn "could not enable $UNIT_NAME (no user session bus?): run as $TARGET_USER in a login session: systemctl --user enable $UNIT_NAME"
        fi
    fi
    write_file "$DESKTOP_FILE" "$desktop" "$USER_OWNER"
}

user_uninstall() {
    local reason state active
    reason=$(user_systemd_reason)
    if [ -n "$reason" ]; then
        say "skip: systemctl --user disable $UNIT_NAME ($reason)"
    else
        state=$(user_systemctl is-enabled "$UNIT_NAME" 2>/dev/null || true)
        active=$(user_systemctl is-active "$UNIT_NAME" 2>/dev/null || true)
        if [ "$state" = enabled ]; then
            run_user_systemctl disable --now "$UNIT_NAME" || warn "could not disable $UNIT_NAME: run as $TARGET_USER: systemctl --user disable --now $UNIT_NAME"
        elif [ "$active" = active ]; then
            run_user_systemctl stop "$UNIT_NAME" || warn "could not stop $UNIT_NAME: run as $TARGET_USER: systemctl --user stop $UNIT_NAME"
        else
            say "already configured: $UNIT_NAME not enabled"
        fi
    fi
    remove_file "$UNIT_FILE"
    if [ "$REMOVED" = 1 ] && [ -z "$reason" ]; then
        run_user_systemctl daemon-reload || true
    fi
    remove_file "$DESKTOP_FILE"
}

# -- tray menus: PyGObject in f2f-cam's own Python ------------------------------------
f2f_cam_python() {  # the interpreter on f2f-cam's #! line (a venv's python for a pip install)
    local line
    IFS= read -r line <"$F2F_CAM" 2>/dev/null || return 1
    case $line in '#!'/*) ;; *) return 1 ;; esac
    line=${line#'#!'}
    line=${line%% *}
    [ -x "$line" ] && printf '%s' "$line"
}

pygobject_requirement() {  # PyGObject 3.51+ needs girepository-2.0 (GLib 2.80+)
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists girepository-2.0 2>/dev/null; then
        printf '%s' "PyGObject"
    else
        printf '%s' "PyGObject<3.51"
    fi
}

as_target_user() {  # run_cmd ARGS as the user who owns the home (pip must not write root's files there)
    if [ "$TARGET_USER" = "$(id -un)" ]; then run_cmd "$@"; else run_cmd runuser -u "$TARGET_USER" -- "$@"; fi
}

pygobject_step() {
    if [ "$NO_TRAY" = 1 ]; then say "skip: tray menus (--no-tray)"; return; fi
    if [ -z "$F2F_CAM" ] && ! command -v f2f-cam >/dev/null 2>&1; then
        warn "f2f-cam is not on PATH: PyGObject (tray menus) not installed; rerun with --f2f-cam /path/to/.venv/bin/f2f-cam"
        return
    fi
    resolve_f2f_cam
    local py req
    if ! py=$(f2f_cam_python); then
        warn "cannot tell which Python runs $F2F_CAM: install PyGObject into it yourself for tray menus ($(pygobject_requirement))"
        return
    fi
    if "$py" -c "import gi; gi.require_version('Gtk', '3.0')" >/dev/null 2>&1; then
        say "already configured: PyGObject with GTK 3 in $py (tray menus)"
        return
    fi
    if ! "$py" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)" 2>/dev/null; then
        warn "f2f-cam runs on the system Python ($py): install your distribution's python3-gi (PyGObject) for tray menus"
        return
    fi
    req=$(pygobject_requirement)
    as_target_user "$py" -m pip install "$req" \
        || FAILED="pip install $req failed (see above): the tray has no menus until it works; the system packages it builds against come with this script's package step"
}

# -- main --------------------------------------------------------------------------
# The system part needs root when it has something to change in the running system.
system_needs_root() {
    is_root && return 1
    [ "$DRY_RUN" = 1 ] && return 1
    PROBE=1 NEEDS_CHANGE=0
    if [ "$UNINSTALL" = 1 ]; then system_uninstall; else system_part; fi
    PROBE=0
    [ "$NEEDS_CHANGE" = 1 ] || return 1
    # Under another --root that this user may write, no root is needed for files.
    if [ "$ROOT" != / ] && [ "$NO_PACKAGES" = 1 ] && [ -w "$ROOT" ]; then return 1; fi
    return 0
}

run_system() {
    if system_needs_root; then
        local args=(--system-only --root "$ROOT" --video-nr "$VIDEO_NR" --exclusive-caps "$EXCLUSIVE_CAPS")
        if [ "$NO_PACKAGES" = 1 ]; then args+=(--no-packages); fi
        if [ "$UNINSTALL" = 1 ]; then args+=(--uninstall); fi
        if command -v sudo >/dev/null 2>&1; then
            say "the system part needs root: running it with sudo"
            if ! sudo bash "$SCRIPT" "${args[@]}"; then
                FAILED="the system part did not complete (see above)"
            fi
        else
            die "the system part needs root and sudo is not installed: run as root: bash $(quote_cmd "$SCRIPT" "${args[@]}"), then run this command again"
        fi
    elif [ "$UNINSTALL" = 1 ]; then
        system_uninstall
    else
        NEEDS_CHANGE=0
        system_part
        if [ "$DRY_RUN" = 1 ] && ! is_root && [ "$NEEDS_CHANGE" = 1 ] && [ "$ROOT" = / ]; then
            say "note: a real run does the system part as root (it asks sudo)"
        fi
    fi
}

pm_remove_hint() {
    detect_pm
    case $PKG_MANAGER in
        apt-get) echo "sudo apt-get remove v4l2loopback-dkms v4l2loopback-utils" ;;
        dnf) echo "sudo dnf remove v4l2loopback" ;;
        pacman) echo "sudo pacman -R v4l2loopback-dkms" ;;
        *) echo "your package manager (v4l2loopback)" ;;
    esac
}

if [ "$UNINSTALL" = 1 ]; then
    if [ "$SYSTEM_ONLY" = 0 ]; then user_uninstall; fi
    run_system
    if [ "$SYSTEM_ONLY" = 0 ]; then
        say "note: packages stay installed; remove them with: $(pm_remove_hint)"
    fi
else
    if [ "$SYSTEM_ONLY" = 0 ] && [ "$NO_AUTOSTART" = 0 ]; then resolve_f2f_cam; fi  # fail early
    run_system
    if [ "$SYSTEM_ONLY" = 0 ]; then user_part; pygobject_step; fi
fi

if [ -n "$FAILED" ]; then die "$FAILED"; fi
if [ "$SYSTEM_ONLY" = 1 ]; then exit 0; fi
if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing was changed"
elif [ "$UNINSTALL" = 1 ]; then
    say "done: f2f-cam's setup is removed"
else
    say "done: \"$CARD_LABEL\" is /dev/video$VIDEO_NR; check with: v4l2-ctl --list-devices"
fi
