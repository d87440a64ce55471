#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Gathers the evidence of a Vigil test run and fails when the machine crashed.

.DESCRIPTION
    Writes into -ResultsDir:
      * fltmc.txt        `fltmc filters` and `fltmc instances -f vigil`
      * stats.txt        `vigil stats` (the driver's counters: drops by reason, verdicts, ...;
                         "port busy" while the service holds the one connection is expected)
      * service.txt      the VigilService state, and a copy of vigil-service.log
      * events-tail.jsonl the last 1000 lines of %ProgramData%\Vigil\vigil.jsonl, and
                         gaps.txt: every gap record in the live file (lost events, in band)
      * verifier.txt     `verifier /querysettings` and `verifier /query` (Driver Verifier state
                         and counters, when enabled)
      * system-events.txt System log since -Since: BugCheck (1001), unexpected shutdown
                         (6008), Kernel-Power 41, FilterManager and service control manager
                         events naming vigil
      * dumps.txt        minidumps and MEMORY.DMP newer than -Since, copied to dumps\
    Exit code 1 when a crash dump or a bugcheck / unexpected-shutdown event is newer than
    -Since; 0 otherwise. Run it after a stress run (stress-fltmc.ps1 calls it), or alone after
    a reboot with -Since taken from the run's stress-started.txt marker.

    NOT RUN in this project's Linux development environment; kept correct by review.

.PARAMETER ResultsDir
    Where to write (created if needed).

.PARAMETER Since
    The start of the run; events and dumps older than this are not counted. Default: the time
    in <ResultsDir>\stress-started.txt, else one hour ago.

.EXAMPLE
    .\scripts\collect-results.ps1 -ResultsDir .\stress-results\20240501-120000
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)] [string] $ResultsDir,
    [datetime] $Since
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Continue'
New-Item -ItemType Directory -Force -Path $ResultsDir | Out-Null
$marker = Join-Path $ResultsDir 'stress-started.txt'
if (-not $Since) {
    $Since = if (Test-Path $marker) { [datetime]::Parse((Get-Content $marker -Raw).Trim()) } else { (Get-Date).AddHours(-1) }
}
$vigil = Join-Path $env:ProgramFiles 'Vigil\vigil.exe'
$dataDir = Join-Path $env:ProgramData 'Vigil'

& { fltmc.exe filters; fltmc.exe instances -f vigil } *>&1 | Set-Content -Encoding utf8 (Join-Path $ResultsDir 'fltmc.txt')
if (Test-Path $vigil) {
    & $vigil stats *>&1 | Set-Content -Encoding utf8 (Join-Path $ResultsDir 'stats.txt')
}
Get-Service -Name VigilService -ErrorAction SilentlyContinue | Format-List Name, Status, StartType |
    Out-String | Set-Content -Encoding utf8 (Join-Path $ResultsDir 'service.txt')
$serviceLog = Join-Path $dataDir 'vigil-service.log'
if (Test-Path $serviceLog) { Copy-Item -Force $serviceLog $ResultsDir }
$jsonl = Join-Path $dataDir 'vigil.jsonl'
if (Test-Path $jsonl) {
    Get-Content -Tail 1000 $jsonl | Set-Content -Encoding utf8 (Join-Path $ResultsDir 'events-tail.jsonl')
    Select-String -Path $jsonl -Pattern '^\{"gap":' | ForEach-Object Line |
        Set-Content -Encoding utf8 (Join-Path $ResultsDir 'gaps.txt')
}
& { verifier.exe /querysettings; verifier.exe /query } *>&1 | Set-Content -Encoding utf8 (Join-Path $ResultsDir 'verifier.txt')

# Crash evidence: the System log and dump files newer than the start of the run.
$crashIds = @(1001, 6008, 41)
$events = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; StartTime = $Since } -ErrorAction SilentlyContinue |
    Where-Object {
        ($crashIds -contains $_.Id) -or
        ($_.ProviderName -match 'FilterManager') -or
        ($_.ProviderName -eq 'Service Control Manager' -and $_.Message -match 'vigil')
    })
$events | Format-List TimeCreated, Id, ProviderName, Message | Out-String -Width 200 |
    Set-Content -Encoding utf8 (Join-Path $ResultsDir 'system-events.txt')
$crashEvents = @($events | Where-Object {
    ($_.Id -eq 1001 -and $_.ProviderName -match 'BugCheck|WER-SystemErrorReporting') -or
    ($_.Id -eq 6008) -or
    ($_.Id -eq 41 -and $_.ProviderName -match 'Kernel-Power')
})

$dumpDir = Join-Path $ResultsDir 'dumps'
$dumps = @()
$dumps += @(Get-ChildItem -ErrorAction SilentlyContinue (Join-Path $env:SystemRoot 'Minidump\*.dmp'))
$dumps += @(Get-Item -ErrorAction SilentlyContinue (Join-Path $env:SystemRoot 'MEMORY.DMP'))
$newDumps = @($dumps | Where-Object { $_ -and $_.LastWriteTime -ge $Since })
$newDumps | Format-Table -AutoSize FullName, Length, LastWriteTime | Out-String |
    Set-Content -Encoding utf8 (Join-Path $ResultsDir 'dumps.txt')
if ($newDumps.Count -gt 0) {
    New-Item -ItemType Directory -Force -Path $dumpDir | Out-Null
    # Minidumps are small; a full MEMORY.DMP can be many GB: note it, copy only minidumps.
    $newDumps | Where-Object { $_.Name -ne 'MEMORY.DMP' } | Copy-Item -Destination $dumpDir
}

Write-Host ("collected into {0}: {1} crash event(s), {2} new dump(s) since {3:o}" -f $ResultsDir, $crashEvents.Count, $newDumps.Count, $Since)
if ($crashEvents.Count -gt 0 -or $newDumps.Count -gt 0) {
    Write-Warning 'the machine crashed during the run: analyse the dump with WinDbg (!analyze -v, !fltkd.filters, !verifier)'
    exit 1
}
exit 0
