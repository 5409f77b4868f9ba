#!/bin/bash
# f2f-cam setup for macOS: checks for the OBS virtual camera (which f2f-cam publishes to
# through pyvirtualcam), says how to get it, and starts f2f-cam at login with a LaunchAgent.
# Idempotent; --dry-run changes nothing; --uninstall removes what this script wrote.
# Written for the bash 3.2 that macOS ships (no bash 4 features). See installer/README.md.
set -euo pipefail

PROG=${0##*/}
MARKER="Written by the f2f-cam installer"
LABEL="org.f2f-cam"
EXTENSION_ID="com.obsproject.obs-studio.mac-camera-extension"
DAL_PLUGIN="/Library/CoreMediaIO/Plug-Ins/DAL/obs-mac-virtualcam.plugin"
GET_OBS="brew install --cask obs (or download it from https://obsproject.com), open OBS, click Start Virtual Camera once and approve the system extension in System Settings > Privacy & Security (General)"

DRY_RUN=0 UNINSTALL=0 USER_HOME="" NO_AUTOSTART=0 F2F_CAM="" TMP_FILE="" WROTE=0

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see %s --help)\n' "$PROG" "$*" "$PROG" >&2; exit 2; }

usage() {
    cat <<EOF
Usage: $PROG [options]
Set up f2f-cam on macOS: check for the OBS virtual camera (say how to get it if it is
missing) and start "f2f-cam run" (the tray) at login with a LaunchAgent.

Options:
  --dry-run         print every action, change nothing
  --uninstall       unload and remove the LaunchAgent (OBS stays installed)
  --user-home DIR   home folder for ~/Library/LaunchAgents (default \$HOME)
  --f2f-cam PATH    the f2f-cam executable to start (default: f2f-cam on PATH)
  --no-autostart    only check for the virtual camera
  -h, --help        show this help
EOF
}

quote_cmd() {
    local out="" a
    for a in "$@"; do
        case $a in
            '' | *[!A-Za-z0-9_./=:,+@%-]*) a=$(printf '%q' "$a") ;;
        esac
        out="$out${out:+ }$a"
    done
    printf '%s' "$out"
}

run_cmd() {
    if [ "$DRY_RUN" = 1 ]; then say "would run: $(quote_cmd "$@")"; return 0; fi
    say "running: $(quote_cmd "$@")"
    "$@"
}

xml_escape() {  # sed, not ${s//&/...}: bash 5.2 gives & a meaning in replacements
    printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'
}

# write_file PATH CONTENT: atomically (temp file + mv), only if the content differs.
# Sets WROTE=1 if it was (or would be) written.
write_file() {
    local dest=$1 content=$2 dir verb="write"
    dir=$(dirname "$dest")
    WROTE=0
    if [ -f "$dest" ] && printf '%s' "$content" | cmp -s - "$dest"; then
        say "already configured: $dest"
        return
    fi
    if [ -e "$dest" ]; then verb="update"; fi
    WROTE=1
    if [ "$DRY_RUN" = 1 ]; then
        if [ ! -d "$dir" ]; then say "would create directory $dir"; fi
        say "would $verb $dest: LaunchAgent $LABEL, ProgramArguments $(quote_cmd "$F2F_CAM" run), RunAtLoad"
        return
    fi
    mkdir -p "$dir" || die "cannot create $dir"
    TMP_FILE=$(mktemp "$dir/.${dest##*/}.XXXXXX")
    printf '%s' "$content" >"$TMP_FILE"
    chmod 0644 "$TMP_FILE"
    mv -f "$TMP_FILE" "$dest"
    TMP_FILE=""
    if [ "$verb" = write ]; then say "wrote $dest"; else say "updated $dest"; fi
}

cleanup() { if [ -n "$TMP_FILE" ]; then rm -f -- "$TMP_FILE"; fi; }
trap cleanup EXIT

# -- options -----------------------------------------------------------------------
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --no-autostart) NO_AUTOSTART=1 ;;
        --user-home | --f2f-cam)
            if [ $# -lt 2 ]; then usage_error "$1 needs a value"; fi
            if [ "$1" = --user-home ]; then USER_HOME=$2; else F2F_CAM=$2; fi
            shift
            ;;
        --user-home=*) USER_HOME=${1#*=} ;;
        --f2f-cam=*) F2F_CAM=${1#*=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown option: $1" ;;
    esac
    shift
done

IS_MACOS=0
if [ "$(uname -s)" = Darwin ]; then IS_MACOS=1; fi
HOME_GIVEN=1
if [ -z "$USER_HOME" ]; then
    HOME_GIVEN=0
    USER_HOME=${HOME:?HOME is not set: pass --user-home}
fi
case $USER_HOME in /*) ;; *) USER_HOME="$(pwd)/$USER_HOME" ;; esac
USER_HOME=${USER_HOME%/}
PLIST="$USER_HOME/Library/LaunchAgents/$LABEL.plist"

if [ "$IS_MACOS" = 1 ] && [ "$(id -u)" = 0 ] && [ "$DRY_RUN" = 0 ]; then
    die "run this as your own user, not root: it sets up a LaunchAgent in your home"
fi

# launchctl acts on the logged-in user's session: only for real, on macOS, for $HOME.
LAUNCHCTL_REASON=""
if [ "$IS_MACOS" = 0 ]; then
    LAUNCHCTL_REASON="not macOS"
elif [ "$HOME_GIVEN" = 1 ] && [ "$USER_HOME" != "${HOME%/}" ]; then
    LAUNCHCTL_REASON="--user-home is not your home"
fi

agent_loaded() { launchctl list "$LABEL" >/dev/null 2>&1; }

# -- the virtual camera --------------------------------------------------------------
obs_version() {  # CFBundleShortVersionString of OBS.app, or nothing
    local app=$1 plist="$1/Contents/Info.plist"
    if [ -x /usr/libexec/PlistBuddy ]; then
        /usr/libexec/PlistBuddy -c 'Print :CFBundleShortVersionString' "$plist" 2>/dev/null || true
    elif command -v defaults >/dev/null 2>&1; then
        defaults read "$app/Contents/Info" CFBundleShortVersionString 2>/dev/null || true
    fi
}

check_camera() {  # prints what it finds; 0 if the OBS virtual camera is ready
    local line="" app="" version="" major="" darwin
    if command -v systemextensionsctl >/dev/null 2>&1; then
        line=$(systemextensionsctl list 2>/dev/null | grep -F "$EXTENSION_ID" | head -n 1 || true)
        case $line in
            *"[activated enabled]"*)
                say "found: OBS virtual camera (system extension $EXTENSION_ID, activated)"
                return 0
                ;;
            ?*)
                warn "the OBS camera extension is installed but not active: open OBS, click Start Virtual Camera, and allow it in System Settings > Privacy & Security"
                return 1
                ;;
        esac
    fi
    if [ -d "$DAL_PLUGIN" ]; then
        darwin=$(uname -r 2>/dev/null | cut -d. -f1)
        if [ "$IS_MACOS" = 1 ] && [ "${darwin:-0}" -ge 22 ] 2>/dev/null; then
            warn "found only OBS's old DAL plug-in ($DAL_PLUGIN); on macOS 13+ f2f-cam needs OBS 28+'s camera extension: update OBS (brew upgrade --cask obs), start its virtual camera once and approve the extension"
            return 1
        fi
        say "found: OBS virtual camera (DAL plug-in $DAL_PLUGIN)"
        return 0
    fi
    for app in /Applications/OBS.app "$USER_HOME/Applications/OBS.app"; do
        if [ -d "$app" ]; then
            version=$(obs_version "$app")
            major=${version%%.*}
            case $major in '' | *[!0-9]*) major="" ;; esac
            if [ -n "$major" ] && [ "$major" -lt 28 ]; then
                warn "OBS $version is too old for the camera extension: update to OBS 28 or newer (brew upgrade --cask obs), start its virtual camera once and approve the extension"
            else
                warn "OBS ${version:-(version unknown)} is installed at $app but its virtual camera is not set up yet: open OBS, click Start Virtual Camera once, approve the system extension in System Settings > Privacy & Security, then rerun this script"
            fi
            return 1
        fi
    done
    warn "the OBS virtual camera is missing: $GET_OBS"
    return 1
}

# -- main ----------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
    if [ -e "$PLIST" ] && ! grep -qF "$MARKER" "$PLIST" 2>/dev/null; then
        warn "left $PLIST in place: it was not written by this installer"
    elif [ -e "$PLIST" ]; then
        if [ -z "$LAUNCHCTL_REASON" ] && agent_loaded; then
            run_cmd launchctl unload -w "$PLIST" || warn "launchctl unload failed; log out and in to stop f2f-cam"
        elif [ -n "$LAUNCHCTL_REASON" ]; then
            say "skip: launchctl unload ($LAUNCHCTL_REASON)"
        fi
        if [ "$DRY_RUN" = 1 ]; then
            say "would remove $PLIST"
        else
            rm -f -- "$PLIST"
            say "removed $PLIST"
        fi
    else
        say "already removed: $PLIST"
    fi
    say "note: OBS stays installed; remove it with: brew uninstall --cask obs"
    if [ "$DRY_RUN" = 1 ]; then say "dry run: nothing was changed"; else say "done: f2f-cam's setup is removed"; fi
    exit 0
fi

CAMERA_OK=1
check_camera || CAMERA_OK=0

if [ "$NO_AUTOSTART" = 1 ]; then
    say "skip: autostart (--no-autostart)"
else
    if [ -z "$F2F_CAM" ]; then
        F2F_CAM=$(command -v f2f-cam || true)
        [ -n "$F2F_CAM" ] || die "f2f-cam is not on PATH: pass --f2f-cam /path/to/f2f-cam (e.g. your venv's bin/f2f-cam), or --no-autostart"
    fi
    case $F2F_CAM in /*) ;; *) F2F_CAM="$(pwd)/$F2F_CAM" ;; esac
    case $F2F_CAM in
        *[[:cntrl:]]*) die "--f2f-cam path has a control character: $F2F_CAM" ;;
    esac
    if [ ! -x "$F2F_CAM" ] || [ -d "$F2F_CAM" ]; then
        warn "$F2F_CAM is not an executable file (yet): the LaunchAgent will fail until it is"
    fi
    PLIST_CONTENT="<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">
<!-- $MARKER (installer/macos/install.sh); its uninstall option removes it. -->
<plist version=\"1.0\">
<dict>
	<key>Label</key>
	<string>$LABEL</string>
	<key>ProgramArguments</key>
	<array>
		<string>$(xml_escape "$F2F_CAM")</string>
		<string>run</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>LimitLoadToSessionType</key>
	<string>Aqua</string>
	<key>ProcessType</key>
	<string>Interactive</string>
</dict>
</plist>
"
    if [ -e "$PLIST" ] && ! grep -qF "$MARKER" "$PLIST" 2>/dev/null; then
        die "$PLIST exists and was not written by this installer: move it away, then rerun"
    fi
    write_file "$PLIST" "$PLIST_CONTENT"
    if [ -n "$LAUNCHCTL_REASON" ]; then
        say "skip: launchctl load ($LAUNCHCTL_REASON); it loads at the next login of that user"
    elif agent_loaded && [ "$WROTE" = 0 ]; then
        say "already configured: LaunchAgent $LABEL loaded"
    else
        if agent_loaded; then
            run_cmd launchctl unload "$PLIST" || true
        fi
        run_cmd launchctl load -w "$PLIST" || die "launchctl load $PLIST failed: log out and in to start f2f-cam"
    fi
fi

if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing was changed"
elif [ "$CAMERA_OK" = 1 ]; then
    say "done: pick \"OBS Virtual Camera\" in Zoom, Teams, OBS or your browser while f2f-cam runs"
else
    say "done, but the OBS virtual camera is not ready yet: see the warning above"
fi
