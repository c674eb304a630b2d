"""Modal screens of the console: confirmations, help, request details, the agent form, the rebuild dialog."""
