#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Enables, disables, queries or reports Driver Verifier (with Filter Verifier) for vigil.sys.

.DESCRIPTION
    -Enable: verifies vigil.sys only (never /all) with
        * Windows 10 build 17627 and later: rule classes, by decimal ID as `verifier /?` and the
          "Driver Verifier options and rule classes" page list them:
              1  special pool            2  force IRQL checking     4  pool tracking
              5  I/O verification        6  deadlock detection      9  security checks
             12  miscellaneous checks   18  DDI compliance checking
          i.e. the standard classes without 8 (DMA checking: Vigil does no DMA) and 34 (WDF
          verification: Vigil is not a WDF driver). With -Extended also
             19  systematic low resources simulation (every failable allocation fails once,
                 in turn: RULES.md rule 20)
             35  extended IRQL checking
          Command: verifier /ruleclasses 1 2 4 5 6 9 12 18 [19 35] /driver vigil.sys
        * older builds: `verifier /standard /driver vigil.sys` (the standard settings).
      Filter Verifier (Filter Manager's checks of a minifilter's use of the Flt routines:
      callback return statuses, contexts and name information released exactly once, objects
      left at unload; see "File System Filter Verification") is active for a minifilter that
      Driver Verifier verifies; no separate switch is documented for it. To confirm it is on,
      attach a kernel debugger: Filter Manager prints FILTER VERIFIER messages for a verified
      filter and `!fltkd.filters` lists it; `verifier /querysettings` shows the driver and
      rule classes. (This is our reading of the documentation; it was not observed here.)
      Settings take effect after a reboot (-Reboot does it).
    -Disable: `verifier /reset` (clears Driver Verifier for ALL drivers: the script lists what
      was verified first), then a reboot.
    -Query: `verifier /querysettings` and `verifier /query`.
    -Report: checks that vigil.sys is being verified now and that no verifier bugcheck was
      logged, writes verifier-report.txt; exit code 1 otherwise (used by the workflow's test
      VM job after a stress run).

    NOT RUN in this project's Linux development environment (kernel-sim's verifier-style
    checks are the Linux counterpart); kept correct by review.

.PARAMETER Enable
    Turn verification of vigil.sys on.
.PARAMETER Disable
    Turn Driver Verifier off (all drivers).
.PARAMETER Query
    Show the current settings and statistics.
.PARAMETER Report
    Check the current state and write a report.
.PARAMETER Extended
    With -Enable: add systematic low resources simulation (19) and extended IRQL checking (35).
.PARAMETER Reboot
    Reboot after -Enable or -Disable so that the change takes effect.
.PARAMETER ResultsDir
    Where -Report writes (default: the current directory).

.EXAMPLE
    .\scripts\verifier.ps1 -Enable -Extended -Reboot
.EXAMPLE
    .\scripts\verifier.ps1 -Report -ResultsDir .\stress-results\latest
#>
[CmdletBinding(DefaultParameterSetName = 'Query')]
param(
    [Parameter(ParameterSetName = 'Enable', Mandatory = $true)] [switch] $Enable,
    [Parameter(ParameterSetName = 'Disable', Mandatory = $true)] [switch] $Disable,
    [Parameter(ParameterSetName = 'Query')] [switch] $Query,
    [Parameter(ParameterSetName = 'Report', Mandatory = $true)] [switch] $Report,
    [Parameter(ParameterSetName = 'Enable')] [switch] $Extended,
    [Parameter(ParameterSetName = 'Enable')] [Parameter(ParameterSetName = 'Disable')] [switch] $Reboot,
    [Parameter(ParameterSetName = 'Report')] [string] $ResultsDir = (Get-Location).Path
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$driver = 'vigil.sys'
# Rule classes need build 17627 (a Windows 10 1803 Insider build) or later.
$ruleClassesBuild = 17627
$standardClasses = @(1, 2, 4, 5, 6, 9, 12, 18)
$extendedClasses = @(19, 35)

function Invoke-Verifier {
    param([string[]] $Arguments)
    Write-Host "==> verifier $($Arguments -join ' ')"
    & verifier.exe @Arguments
    # verifier.exe's exit code is not documented (a non-zero code commonly means "reboot
    # required"), so success is judged by the settings it reports afterwards, not by the code.
    Write-Host "(verifier exit code $LASTEXITCODE)"
}

switch ($PSCmdlet.ParameterSetName) {
    'Enable' {
        $build = [System.Environment]::OSVersion.Version.Build
        if ($build -ge $ruleClassesBuild) {
            $classes = $standardClasses
            if ($Extended) { $classes += $extendedClasses }
            Invoke-Verifier (@('/ruleclasses') + ($classes | ForEach-Object { "$_" }) + @('/driver', $driver))
        } else {
            if ($Extended) { Write-Warning "build $build has no rule classes: -Extended ignored" }
            Invoke-Verifier @('/standard', '/driver', $driver)
        }
        $settings = (& verifier.exe /querysettings) -join "`n"
        $settings
        if ($settings -notmatch [regex]::Escape($driver)) { throw "verifier /querysettings does not list $driver" }
        Write-Host 'Driver Verifier settings change at the next boot.'
        if ($Reboot) { Restart-Computer -Force }
    }
    'Disable' {
        Write-Host 'currently verified (all of it is reset):'
        & verifier.exe /querysettings
        Invoke-Verifier @('/reset')
        Write-Host 'Driver Verifier is off after the next boot.'
        if ($Reboot) { Restart-Computer -Force }
    }
    'Query' {
        & verifier.exe /querysettings
        & verifier.exe /query
    }
    'Report' {
        New-Item -ItemType Directory -Force -Path $ResultsDir | Out-Null
        $reportFile = Join-Path $ResultsDir 'verifier-report.txt'
        $settings = (& verifier.exe /querysettings) -join "`n"
        $stats = (& verifier.exe /query) -join "`n"
        $verified = $settings -match [regex]::Escape($driver)
        # Driver Verifier's own bugchecks (0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION, 0xC9
        # DRIVER_VERIFIER_IOMANAGER_VIOLATION, ...) are logged as BugCheck event 1001 after the
        # reboot; any bugcheck since the last boot-before-this one counts.
        $lastBoot = (Get-CimInstance Win32_OperatingSystem).LastBootUpTime
        $bugchecks = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; Id = 1001; StartTime = $lastBoot.AddDays(-1) } -ErrorAction SilentlyContinue |
            Where-Object { $_.ProviderName -match 'BugCheck|WER-SystemErrorReporting' })
        @(
            "vigil.sys verified: $verified"
            "bugcheck events since the previous boot: $($bugchecks.Count)"
            ''
            '--- verifier /querysettings'
            $settings
            ''
            '--- verifier /query'
            $stats
            ''
            '--- bugcheck events'
            ($bugchecks | Format-List TimeCreated, Message | Out-String -Width 200)
        ) | Set-Content -Encoding utf8 $reportFile
        Write-Host "report: $reportFile"
        if (-not $verified) { Write-Error "vigil.sys is not being verified: run -Enable and reboot first"; exit 1 }
        if ($bugchecks.Count -gt 0) { Write-Error "bugcheck(s) logged: see $reportFile"; exit 1 }
    }
}
