#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Removes the Vigil service and the Vigil minifilter.

.DESCRIPTION
    1. Stops and unregisters the service (`vigil service stop`, `vigil service uninstall`);
       falls back to `sc.exe stop/delete VigilService` when vigil.exe is gone.
    2. Unloads the driver (`fltmc unload vigil`), which detaches every instance.
    3. Removes the driver package from the driver store (`pnputil /delete-driver oemNN.inf
       /uninstall`), which on Windows 10 1903 and later also removes the service and
       vigil.sys (the INF runs it from the driver store). The INF's DefaultUninstall section,
       run first through SetupAPI, does that on older Windows and is ignored on current
       Windows (LegacyUninstall).
    4. Keeps %ProgramData%\Vigil (events, log, policy) unless -RemoveData.

    Every step tolerates "already gone", so the script also cleans up after a failed install
    (the workflow runs it with `if: always()`). NOT RUN in this project's Linux development
    environment; kept correct by review.

.PARAMETER RemoveData
    Also delete %ProgramData%\Vigil (the JSON Lines files, the service log, the policy).

.EXAMPLE
    .\scripts\uninstall.ps1
#>
[CmdletBinding()]
param([switch] $RemoveData)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$failures = @()

$programDir = Join-Path $env:ProgramFiles 'Vigil'
$vigil = Join-Path $programDir 'vigil.exe'

if (Get-Service -Name VigilService -ErrorAction SilentlyContinue) {
    Write-Host '==> stop and unregister the service'
    if (Test-Path $vigil) {
        & $vigil service uninstall
        if ($LASTEXITCODE -ne 0) { $failures += "vigil service uninstall ($LASTEXITCODE)" }
    } else {
        sc.exe stop VigilService | Out-Null
        sc.exe delete VigilService
        if ($LASTEXITCODE -ne 0) { $failures += "sc delete VigilService ($LASTEXITCODE)" }
    }
}

if (fltmc.exe filters | Select-String -Pattern '^\s*vigil\s' -Quiet) {
    Write-Host '==> unload the driver'
    fltmc.exe unload vigil
    if ($LASTEXITCODE -ne 0) { $failures += "fltmc unload vigil ($LASTEXITCODE)" }
}

# The published name (oemNN.inf) of our package in the driver store.
$oemNames = @()
$lines = pnputil.exe /enum-drivers
for ($i = 0; $i -lt $lines.Count; $i++) {
    if ($lines[$i] -match 'Original Name:\s+vigil\.inf' -and $i -gt 0 -and $lines[$i - 1] -match 'Published Name:\s+(oem\d+\.inf)') {
        $oemNames += $Matches[1]
    }
}
foreach ($oem in $oemNames) {
    $infPath = Join-Path $env:windir "INF\$oem"
    if (Test-Path $infPath) {
        Write-Host "==> DefaultUninstall of $oem"
        RUNDLL32.EXE SETUPAPI.DLL,InstallHinfSection DefaultUninstall.NTamd64 132 $infPath
    }
    Write-Host "==> remove $oem from the driver store"
    pnputil.exe /delete-driver $oem /uninstall /force
    if ($LASTEXITCODE -ne 0) { $failures += "pnputil /delete-driver $oem ($LASTEXITCODE)" }
}
# SetupAPI does not always delete a running service's key; make sure nothing is left.
if (Get-Service -Name vigil -ErrorAction SilentlyContinue) {
    sc.exe delete vigil | Out-Null
}

if (Test-Path $programDir) { Remove-Item -Recurse -Force $programDir }
if ($RemoveData) {
    $dataDir = Join-Path $env:ProgramData 'Vigil'
    if (Test-Path $dataDir) { Remove-Item -Recurse -Force $dataDir }
}

if ($failures.Count -gt 0) {
    Write-Error ("uninstall finished with failures: " + ($failures -join '; '))
    exit 1
}
Write-Host 'Vigil removed.'
