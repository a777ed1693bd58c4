"""LDevIDs for devices (RFC 9646): what to ask a device for, and the CAs that certify its key."""
