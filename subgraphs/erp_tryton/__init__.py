"""The second ERP: a real Tryton 8.2 server over JSON-RPC, mapped to the same canonical model."""
