#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    fltmc load/unload stress for the Vigil minifilter, with concurrent file I/O and service
    start/stop churn, for N cycles; collects the results and looks for bugchecks.

.DESCRIPTION
    The field crashes this project is built against happened exactly here: a filter unloaded
    while I/O was in flight, while its service was connecting or in the middle of a message,
    or while DriverEntry had not finished (RULES.md rules 1, 2, 5). Each cycle:
      1. `fltmc load vigil` (a failure is recorded, and the cycle goes on to the next);
      2. a random short pause (0-200 ms) so that unloads land at different moments;
      3. `fltmc unload vigil` (a refusal or failure is recorded);
    while, in background jobs for the whole run:
      * I/O workers create, write, rename, delete files in a work directory (one per volume
        given in -Volumes), including under a protected path if -ProtectedDir is given;
      * a service churn worker stops and starts VigilService at random intervals, so the
        service connects, disconnects and dies mid-message while the driver comes and goes.
    At the end: the driver is loaded again, the service started, and collect-results.ps1
    gathers the service log, the JSON Lines tail, `vigil stats`, the System event log
    (bugcheck 1001, unexpected shutdown 6008, FilterManager events), Driver Verifier state and
    any new minidump / MEMORY.DMP. The run FAILS if a new dump or bugcheck event appeared, if
    the driver failed to load or unload more than -MaxFailures times, or if an I/O worker died.

    A bugcheck reboots the machine, which ends this script: run it on a test VM with a kernel
    debugger or with dumps enabled, from a snapshot; after a reboot, run collect-results.ps1
    alone to gather the evidence (it compares against the marker file this script leaves).

    NOT RUN in this project's Linux development environment (kernel-sim runs the Linux
    counterpart of these scenarios); kept correct by review, run by the self-hosted test VM
    job of .github/workflows/windows.yml where one exists.

.PARAMETER Cycles
    Load/unload cycles (default 200).

.PARAMETER Volumes
    Directories on the volumes to exercise (default: $env:TEMP). Each gets a vigil-stress
    work directory.

.PARAMETER ProtectedDir
    A directory the policy protects (verdict requests happen on every create there).

.PARAMETER IoWorkers
    I/O worker jobs per volume (default 2).

.PARAMETER NoServiceChurn
    Leave the service alone (only load/unload and I/O).

.PARAMETER MaxFailures
    Load/unload failures tolerated before the run fails (default 0).

.PARAMETER ResultsDir
    Where results go (default .\stress-results\<timestamp>).

.EXAMPLE
    .\scripts\stress-fltmc.ps1 -Cycles 500 -Volumes C:\Temp, D:\Temp -ProtectedDir C:\Secret
#>
[CmdletBinding()]
param(
    [ValidateRange(1, 1000000)] [int] $Cycles = 200,
    [string[]] $Volumes = @($env:TEMP),
    [string] $ProtectedDir,
    [ValidateRange(1, 64)] [int] $IoWorkers = 2,
    [switch] $NoServiceChurn,
    [int] $MaxFailures = 0,
    [string] $ResultsDir = (Join-Path (Get-Location) ("stress-results\" + (Get-Date -Format 'yyyyMMdd-HHmmss')))
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
New-Item -ItemType Directory -Force -Path $ResultsDir | Out-Null
$started = Get-Date
# The marker collect-results.ps1 compares dumps and events against (also after a reboot).
$marker = Join-Path $ResultsDir 'stress-started.txt'
$started.ToString('o') | Set-Content -Encoding utf8 $marker

$vigil = Join-Path $env:ProgramFiles 'Vigil\vigil.exe'
$stopFile = Join-Path $ResultsDir 'stop'

# ---- background workers ------------------------------------------------------------------

$ioWorker = {
    param([string] $Dir, [string] $StopFile, [int] $Id)
    $ErrorActionPreference = 'Continue'
    New-Item -ItemType Directory -Force -Path $Dir | Out-Null
    $ops = 0; $errors = 0
    while (-not (Test-Path $StopFile)) {
        try {
            $a = Join-Path $Dir ("w$Id-" + [guid]::NewGuid().ToString('N') + '.txt')
            $b = "$a.renamed"
            [System.IO.File]::WriteAllText($a, "vigil stress $ops")       # create + first write + close
            [System.IO.File]::AppendAllText($a, 'more')                      # open + write
            Move-Item -LiteralPath $a -Destination $b                         # rename
            $null = [System.IO.File]::ReadAllBytes($b)                        # open for read
            Remove-Item -LiteralPath $b                                       # delete
            $ops += 5
        } catch {
            # Denied creates under a protected directory are expected; count, do not stop.
            $errors++
        }
    }
    [pscustomobject]@{ Worker = $Id; Dir = $Dir; Operations = $ops; Errors = $errors }
}

$churnWorker = {
    param([string] $StopFile)
    $ErrorActionPreference = 'Continue'
    $rng = New-Object System.Random
    $stops = 0; $starts = 0
    while (-not (Test-Path $StopFile)) {
        Start-Sleep -Milliseconds ($rng.Next(200, 2000))
        Stop-Service -Name VigilService -Force -ErrorAction SilentlyContinue; $stops++
        Start-Sleep -Milliseconds ($rng.Next(0, 500))
        Start-Service -Name VigilService -ErrorAction SilentlyContinue; $starts++
    }
    [pscustomobject]@{ Stops = $stops; Starts = $starts }
}

$jobs = @()
$workerId = 0
foreach ($volume in $Volumes) {
    for ($i = 0; $i -lt $IoWorkers; $i++) {
        $jobs += Start-Job -ScriptBlock $ioWorker -ArgumentList (Join-Path $volume 'vigil-stress'), $stopFile, $workerId
        $workerId++
    }
}
if ($ProtectedDir) {
    $jobs += Start-Job -ScriptBlock $ioWorker -ArgumentList $ProtectedDir, $stopFile, $workerId
}
$churn = $null
if (-not $NoServiceChurn -and (Get-Service -Name VigilService -ErrorAction SilentlyContinue)) {
    $churn = Start-Job -ScriptBlock $churnWorker -ArgumentList $stopFile
}

# ---- the load/unload loop ----------------------------------------------------------------

$rng = New-Object System.Random
$loadFailures = 0; $unloadFailures = 0
$log = Join-Path $ResultsDir 'cycles.csv'
'cycle,load_exit,unload_exit,load_ms,unload_ms' | Set-Content -Encoding utf8 $log
# Start from an unloaded driver.
fltmc.exe unload vigil 2>&1 | Out-Null
try {
    for ($cycle = 1; $cycle -le $Cycles; $cycle++) {
        $t = [System.Diagnostics.Stopwatch]::StartNew()
        $out = fltmc.exe load vigil 2>&1
        $loadExit = $LASTEXITCODE; $loadMs = $t.ElapsedMilliseconds
        if ($loadExit -ne 0) { $loadFailures++; Write-Warning "cycle ${cycle}: load failed ($loadExit): $out" }
        Start-Sleep -Milliseconds ($rng.Next(0, 200))
        $t.Restart()
        $out = fltmc.exe unload vigil 2>&1
        $unloadExit = $LASTEXITCODE; $unloadMs = $t.ElapsedMilliseconds
        if ($unloadExit -ne 0 -and $loadExit -eq 0) { $unloadFailures++; Write-Warning "cycle ${cycle}: unload failed ($unloadExit): $out" }
        "$cycle,$loadExit,$unloadExit,$loadMs,$unloadMs" | Add-Content -Encoding utf8 $log
        if ($cycle % 50 -eq 0) { Write-Host "cycle $cycle/$Cycles (load failures $loadFailures, unload failures $unloadFailures)" }
    }
} finally {
    New-Item -ItemType File -Force -Path $stopFile | Out-Null
    $ioResults = @($jobs | Wait-Job -Timeout 60 | Receive-Job)
    $churnResult = if ($churn) { $churn | Wait-Job -Timeout 60 | Receive-Job } else { $null }
    $jobs + @($churn) | Where-Object { $_ } | Remove-Job -Force
    # Leave the machine as it was found: driver loaded, service running.
    fltmc.exe load vigil 2>&1 | Out-Null
    if (Get-Service -Name VigilService -ErrorAction SilentlyContinue) { Start-Service -Name VigilService -ErrorAction SilentlyContinue }
}

$ioResults | Format-Table -AutoSize | Out-String | Set-Content -Encoding utf8 (Join-Path $ResultsDir 'io-workers.txt')
if ($churnResult) { $churnResult | Format-List | Out-String | Set-Content -Encoding utf8 (Join-Path $ResultsDir 'service-churn.txt') }
$deadWorkers = ($Volumes.Count * $IoWorkers + [int][bool]$ProtectedDir) - $ioResults.Count

& (Join-Path $PSScriptRoot 'collect-results.ps1') -ResultsDir $ResultsDir -Since $started
$collected = $LASTEXITCODE

$summary = [pscustomobject]@{
    Cycles          = $Cycles
    LoadFailures    = $loadFailures
    UnloadFailures  = $unloadFailures
    IoWorkersLost   = $deadWorkers
    CollectExitCode = $collected
    Duration        = ((Get-Date) - $started).ToString()
}
$summary | Format-List | Out-String | Tee-Object -FilePath (Join-Path $ResultsDir 'summary.txt')
if ($collected -ne 0 -or ($loadFailures + $unloadFailures) -gt $MaxFailures -or $deadWorkers -gt 0) {
    Write-Error "stress FAILED (see $ResultsDir)"
    exit 1
}
Write-Host "stress passed: $Cycles cycles (results in $ResultsDir)"
