"""The operations console: server-rendered pages for the dead-letter queue and audit stories."""
