<#
.SYNOPSIS
    f2f-cam setup for Windows: checks for the OBS Virtual Camera (or Unity Capture), says
    how to get it, and starts "f2f-cam run" (the tray) at login.

.DESCRIPTION
    f2f-cam publishes its frames through pyvirtualcam, which on Windows needs the OBS
    Virtual Camera (OBS Studio 26 or newer) or, optionally, Unity Capture. This script
    finds them (registry CLSID, OBS install folder), explains how to get them when they
    are missing, and puts a shortcut "Face2Face Cam.lnk" in your Startup folder that
    runs "f2f-cam run". Idempotent: a second run changes nothing. It installs no
    software itself and needs no administrator rights.

.PARAMETER DryRun
    Print every action, change nothing.

.PARAMETER Uninstall
    Remove the Startup shortcut this script wrote (OBS stays installed).

.PARAMETER F2fCam
    The f2f-cam executable to start (default: f2f-cam on PATH, e.g. your venv's
    Scripts\f2f-cam.exe).

.PARAMETER NoAutostart
    Only check for the virtual camera.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File installer\windows\install.ps1 -DryRun
#>
[CmdletBinding()]
param(
    [switch]$DryRun,
    [switch]$Uninstall,
    [string]$F2fCam = '',
    [switch]$NoAutostart
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$ObsClsid = '{A3FCE0F5-3493-419F-958A-ABA1250EC20B}'    # OBS Virtual Camera (DirectShow filter)
$UnityClsid = '{5C2CD55C-92AD-4999-8666-912BD3E70010}'  # Unity Capture, 64-bit filter
$Marker = 'Written by the f2f-cam installer'
$ShortcutName = 'Face2Face Cam.lnk'
$GetObs = 'install OBS Studio 26 or newer (winget install OBSProject.OBSStudio, or https://obsproject.com), open it and click Start Virtual Camera once'

function Say([string]$Message) { Write-Host $Message }  # Write-Host: not part of a function's return value
function Warn([string]$Message) { Write-Warning $Message }
function Fail([string]$Message) {
    [Console]::Error.WriteLine("error: $Message")
    exit 1
}

$OnWindows = [Environment]::OSVersion.Platform -eq [PlatformID]::Win32NT
if (-not $OnWindows -and -not $DryRun) {
    Fail 'this script is for Windows (use installer/linux/install.sh or installer/macos/install.sh)'
}

# -- the virtual camera ------------------------------------------------------------
function Find-Clsid([string]$Clsid) {
    # HKLM (64- and 32-bit views) and HKCU: where DirectShow filters get registered.
    $keys = @(
        "HKLM:\SOFTWARE\Classes\CLSID\$Clsid",
        "HKLM:\SOFTWARE\Classes\WOW6432Node\CLSID\$Clsid",
        "HKCU:\SOFTWARE\Classes\CLSID\$Clsid"
    )
    foreach ($key in $keys) {
        if (Test-Path -LiteralPath $key -ErrorAction SilentlyContinue) { return $key }
    }
    return $null
}

function Find-Obs {
    # The OBS install folder: from its registry key, else the usual places.
    $dirs = @()
    foreach ($key in @('HKLM:\SOFTWARE\OBS Studio', 'HKLM:\SOFTWARE\WOW6432Node\OBS Studio')) {
        $item = Get-ItemProperty -LiteralPath $key -ErrorAction SilentlyContinue
        if ($item -and $item.PSObject.Properties['(default)']) { $dirs += $item.'(default)' }
    }
    foreach ($var in @('ProgramFiles', 'ProgramFiles(x86)')) {
        $base = [Environment]::GetEnvironmentVariable($var)
        if ($base) { $dirs += (Join-Path $base 'obs-studio') }
    }
    foreach ($dir in $dirs) {
        $exe = Join-Path $dir 'bin\64bit\obs64.exe'
        if (Test-Path -LiteralPath $exe) {
            $version = (Get-Item -LiteralPath $exe).VersionInfo.ProductVersion
            $module = Join-Path $dir 'data\obs-plugins\win-dshow\obs-virtualcam-module64.dll'
            return [pscustomobject]@{ Dir = $dir; Version = $version; HasModule = (Test-Path -LiteralPath $module) }
        }
    }
    return $null
}

function Test-Camera {
    $key = Find-Clsid $ObsClsid
    $ready = $false
    if ($key) {
        Say "found: OBS Virtual Camera ($key)"
        $ready = $true
    } else {
        $obs = Find-Obs
        if ($obs) {
            $major = 0
            if ($obs.Version -match '^(\d+)') { $major = [int]$Matches[1] }
            if ($major -gt 0 -and $major -lt 26) {
                Warn "OBS $($obs.Version) in $($obs.Dir) has no virtual camera: update it to 26 or newer (winget upgrade OBSProject.OBSStudio)"
            } else {
                Warn "OBS $($obs.Version) is installed in $($obs.Dir) but its virtual camera is not registered: open OBS and click Start Virtual Camera once (or reinstall OBS), then run this script again"
            }
        } else {
            Warn "the OBS Virtual Camera is missing: $GetObs"
        }
    }
    $unity = Find-Clsid $UnityClsid
    if ($unity) {
        Say "found: Unity Capture ($unity), an alternative f2f-cam can also use"
        $ready = $true
    } else {
        Say 'note: Unity Capture (optional) is not installed; it is an alternative that leaves the OBS camera free for OBS: https://github.com/schellingb/UnityCapture'
    }
    return $ready
}

# -- autostart: a shortcut in the Startup folder -----------------------------------
if ($OnWindows) {
    $StartupDir = [Environment]::GetFolderPath('Startup')
} else {
    $StartupDir = '<Startup folder>'
}
$ShortcutPath = Join-Path $StartupDir $ShortcutName

function Read-Shortcut([string]$Path) {
    if (-not $OnWindows -or -not (Test-Path -LiteralPath $Path)) { return $null }
    $shell = New-Object -ComObject WScript.Shell
    return $shell.CreateShortcut($Path)  # opens the existing file; nothing is written
}

function Resolve-F2fCam {
    $exe = $script:F2fCam
    if (-not $exe) {
        $cmd = Get-Command 'f2f-cam' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if (-not $cmd) {
            Fail "f2f-cam is not on PATH: pass -F2fCam C:\path\to\f2f-cam.exe (e.g. your venv's Scripts\f2f-cam.exe), or -NoAutostart"
        }
        $exe = $cmd.Path
    }
    $exe = [IO.Path]::GetFullPath($exe)
    if (-not (Test-Path -LiteralPath $exe -PathType Leaf)) {
        Warn "$exe does not exist (yet): the shortcut will fail until it does"
    }
    return $exe
}

function Install-Autostart {
    $exe = Resolve-F2fCam
    $arguments = 'run'
    $description = "$Marker; install.ps1 -Uninstall removes it. Starts the f2f-cam tray."
    $existing = Read-Shortcut $ShortcutPath
    if ($existing) {
        if ($existing.Description -notlike "$Marker*") {
            Fail "$ShortcutPath exists and was not written by this installer: move it away, then run this script again"
        }
        if ($existing.TargetPath -eq $exe -and $existing.Arguments -eq $arguments -and
            $existing.Description -eq $description -and $existing.WindowStyle -eq 7) {
            Say "already configured: $ShortcutPath"
            return
        }
        $verb = 'update'
    } else {
        $verb = 'write'
    }
    if ($DryRun) {
        Say "would $verb shortcut ${ShortcutPath}: `"$exe`" $arguments (minimized window)"
        return
    }
    # Written beside the target under a temporary name, then moved over it.
    $tmp = Join-Path $StartupDir ('.f2f-cam-' + [guid]::NewGuid().ToString('N') + '.lnk')
    try {
        $shell = New-Object -ComObject WScript.Shell
        $link = $shell.CreateShortcut($tmp)
        $link.TargetPath = $exe
        $link.Arguments = $arguments
        $link.WorkingDirectory = [Environment]::GetFolderPath('UserProfile')
        $link.Description = $description
        $link.WindowStyle = 7  # minimized: f2f-cam.exe is a console program; the tray icon is the UI
        $link.Save()
        Move-Item -LiteralPath $tmp -Destination $ShortcutPath -Force
    } catch {
        Remove-Item -LiteralPath $tmp -Force -ErrorAction SilentlyContinue
        Fail "cannot write ${ShortcutPath}: $($_.Exception.Message)"
    }
    if ($verb -eq 'write') { Say "wrote $ShortcutPath" } else { Say "updated $ShortcutPath" }
}

function Uninstall-Autostart {
    $existing = Read-Shortcut $ShortcutPath
    if (-not $existing) {
        Say "already removed: $ShortcutPath"
        return
    }
    if ($existing.Description -notlike "$Marker*") {
        Warn "left $ShortcutPath in place: it was not written by this installer"
        return
    }
    if ($DryRun) {
        Say "would remove $ShortcutPath"
        return
    }
    try {
        Remove-Item -LiteralPath $ShortcutPath -Force
    } catch {
        Fail "cannot remove ${ShortcutPath}: $($_.Exception.Message)"
    }
    Say "removed $ShortcutPath"
}

# -- main --------------------------------------------------------------------------
if ($Uninstall) {
    Uninstall-Autostart
    Say 'note: OBS stays installed; remove it in Settings > Apps, or: winget uninstall OBSProject.OBSStudio'
    if ($DryRun) { Say 'dry run: nothing was changed' } else { Say "done: f2f-cam's setup is removed" }
    exit 0
}

$cameraReady = Test-Camera
if ($NoAutostart) {
    Say 'skip: autostart (-NoAutostart)'
} else {
    Install-Autostart
}
if ($DryRun) {
    Say 'dry run: nothing was changed'
} elseif ($cameraReady) {
    Say 'done: pick "OBS Virtual Camera" in Zoom, Teams or your browser while f2f-cam runs (it starts at your next login)'
} else {
    Say 'done, but no virtual camera is ready yet: see the warning above'
}
exit 0
