"""The flight recorder's events sent where operators look: syslog (RFC 5424)."""
