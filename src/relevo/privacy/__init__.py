"""Privacy: PII redaction, data access and audit records."""
