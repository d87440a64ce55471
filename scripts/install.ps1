#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs the Vigil minifilter (vigil.sys, from its INF) and the Vigil service (vigil.exe).

.DESCRIPTION
    1. Checks the package: vigil.inf, vigil.sys, vigil.cat (and vigil.exe unless -NoService).
    2. Warns when the driver is test-signed and test signing is off (it would not load).
    3. Installs the INF. Minifilters are primitive drivers (DefaultInstall, no hardware ID):
       on Windows 10 1903 and later `pnputil /add-driver vigil.inf /install` processes their
       DefaultInstall section; on older builds, or with -UseSetupApi, the classic
       `RUNDLL32.EXE SETUPAPI.DLL,InstallHinfSection DefaultInstall.NTamd64 132 <inf>`.
    4. Loads the driver (`fltmc load vigil`) and shows `fltmc filters` / `fltmc instances`.
    5. Copies vigil.exe (and the policy, if given) to %ProgramFiles%\Vigil and
       %ProgramData%\Vigil, checks the policy (`vigil check-policy`), registers the service
       with `vigil service install` and starts it (`vigil service start`).

    Written for Windows 10 2004+ / Windows 11 x64 test machines. NOT RUN in this project's
    Linux development environment: it is kept correct by review, and by the self-hosted test
    VM job of .github/workflows/windows.yml where one exists.

.PARAMETER Package
    Directory holding vigil.inf, vigil.sys, vigil.cat and, unless -NoService, vigil.exe
    (e.g. target\x86_64-pc-windows-msvc\release\vigil_package from `cargo make package`).

.PARAMETER Service
    Path of vigil.exe when it is not in the package directory.

.PARAMETER Policy
    A policy file (TOML) to install as %ProgramData%\Vigil\policy.toml.

.PARAMETER NoService
    Install and load the driver only.

.PARAMETER UseSetupApi
    Install the INF through SetupAPI's InstallHinfSection instead of pnputil.

.EXAMPLE
    .\scripts\install.ps1 -Package .\target\x86_64-pc-windows-msvc\release\vigil_package -Policy .\policy.toml

.NOTES
    Exit code 0 on success; the script stops at the first failing step (it throws).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $Package,
    [string] $Service,
    [string] $Policy,
    [switch] $NoService,
    [switch] $UseSetupApi
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Invoke-Checked {
    # Runs a native command and throws when its exit code is not 0 (native commands do not
    # throw in PowerShell 5.1 whatever $ErrorActionPreference says).
    param([string] $What, [scriptblock] $Command)
    Write-Host "==> $What"
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

$Package = (Resolve-Path $Package).Path
$inf = Join-Path $Package 'vigil.inf'
foreach ($file in 'vigil.inf', 'vigil.sys', 'vigil.cat') {
    if (-not (Test-Path (Join-Path $Package $file))) { throw "$file is missing from $Package" }
}

# A test-signed driver loads only with test signing on (bcdedit /set testsigning on, reboot).
$signature = Get-AuthenticodeSignature (Join-Path $Package 'vigil.sys')
$testSigning = (bcdedit /enum '{current}' | Select-String -Pattern 'testsigning\s+Yes' -Quiet)
if ($signature.SignerCertificate -and $signature.Status -ne 'Valid' -and -not $testSigning) {
    Write-Warning ("vigil.sys is not signed by a trusted publisher ({0}) and test signing is off: " +
        "the driver will not load. Enable it with 'bcdedit /set testsigning on' and reboot.") -f $signature.Status
}

$build = [System.Environment]::OSVersion.Version.Build
if ($UseSetupApi -or $build -lt 18362) {
    # Section names are decorated for amd64 by the stamped INF (see driver.inx), and for the
    # build: from 10.0.25952 on, Filter Manager reads the instances under Parameters, which only
    # the .10.0...25952 section writes; earlier builds need the downlevel section.
    $section = if ($build -ge 25952) { 'DefaultInstall.NTamd64.10.0...25952' } else { 'DefaultInstall.NTamd64' }
    Invoke-Checked "install the INF (SetupAPI $section)" {
        RUNDLL32.EXE SETUPAPI.DLL,InstallHinfSection $section 132 $inf
    }
} else {
    Invoke-Checked 'install the INF (pnputil /add-driver /install)' { pnputil.exe /add-driver $inf /install }
}

# fltmc load fails when the filter is already loaded: unload first, so that the binary just
# installed is the one that runs.
$loaded = (fltmc.exe filters | Select-String -Pattern '^\s*vigil\s' -Quiet)
if ($loaded) { Invoke-Checked 'unload the previous vigil' { fltmc.exe unload vigil } }
Invoke-Checked 'load the driver' { fltmc.exe load vigil }
fltmc.exe filters
fltmc.exe instances -f vigil

if ($NoService) { Write-Host 'driver installed and loaded; service not installed (-NoService)'; exit 0 }

if (-not $Service) { $Service = Join-Path $Package 'vigil.exe' }
if (-not (Test-Path $Service)) { throw "vigil.exe not found at $Service (give -Service or -NoService)" }
$programDir = Join-Path $env:ProgramFiles 'Vigil'
$dataDir = Join-Path $env:ProgramData 'Vigil'
New-Item -ItemType Directory -Force -Path $programDir, $dataDir | Out-Null
# A running service holds vigil.exe open: stop it before replacing the binary.
if (Get-Service -Name VigilService -ErrorAction SilentlyContinue) {
    Invoke-Checked 'stop the running service' { & (Join-Path $programDir 'vigil.exe') service stop }
    Invoke-Checked 'uninstall the previous service' { & (Join-Path $programDir 'vigil.exe') service uninstall }
}
Copy-Item -Force $Service (Join-Path $programDir 'vigil.exe')
$vigil = Join-Path $programDir 'vigil.exe'

$installArgs = @('service', 'install')
if ($Policy) {
    $policyTarget = Join-Path $dataDir 'policy.toml'
    Copy-Item -Force $Policy $policyTarget
    Invoke-Checked 'check the policy' { & $vigil check-policy $policyTarget }
    $installArgs += @('--policy', $policyTarget)
}
Invoke-Checked 'register the service' { & $vigil @installArgs }
Invoke-Checked 'start the service' { & $vigil service start }
Start-Sleep -Seconds 2
Get-Service -Name VigilService | Format-Table -AutoSize Name, Status, StartType
Write-Host "events: $(Join-Path $dataDir 'vigil.jsonl')   log: $(Join-Path $dataDir 'vigil-service.log')"
Write-Host "follow them with: & '$vigil' tail"
