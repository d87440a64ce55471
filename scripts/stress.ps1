#Requires -Version 5.1
<#
.SYNOPSIS
    Compatibility name for stress-fltmc.ps1 (the workflow's test VM job calls `stress.ps1`).

.DESCRIPTION
    Passes every argument to stress-fltmc.ps1 and returns its exit code. See that script.

.EXAMPLE
    .\scripts\stress.ps1 -Cycles 200
#>
& (Join-Path $PSScriptRoot 'stress-fltmc.ps1') @args
exit $LASTEXITCODE
