# Registers a daily Windows scheduled task on the MIM Service server that rotates the mailbox app's
# client secret when it is due. Run once, elevated. The task runs as SYSTEM with app-only admin
# credentials from machine environment variables (AZURE_TENANT_ID, AZURE_CLIENT_ID,
# AZURE_CLIENT_CERTIFICATE_PATH or AZURE_CLIENT_SECRET) and MIM_O365_APP_ID.
# Exit code 75 means "temporary failure": the task runs again the next day.

$MimO365 = 'C:\Program Files\mim-o365\.venv\Scripts\mim-o365.exe'
$Arguments = 'rotate --app-id %MIM_O365_APP_ID% --tenant %AZURE_TENANT_ID% --auth environment --secret-out C:\ProgramData\mim-o365\client-secret --output json'

$Action = New-ScheduledTaskAction -Execute 'cmd.exe' -Argument "/c `"`"$MimO365`" $Arguments >> C:\ProgramData\mim-o365\rotate.log 2>&1`""
$Trigger = New-ScheduledTaskTrigger -Daily -At 3:17am -RandomDelay (New-TimeSpan -Minutes 30)
$Settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -ExecutionTimeLimit (New-TimeSpan -Hours 1)
$Principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest

Register-ScheduledTask -TaskName 'mim-o365 secret rotation' -Action $Action -Trigger $Trigger `
    -Settings $Settings -Principal $Principal -Description 'Rotates the MIM Service mailbox app client secret when due' -Force
