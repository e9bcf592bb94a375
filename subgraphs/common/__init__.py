"""What every system package shares: configuration, HTTP transports, sandbox plumbing."""
