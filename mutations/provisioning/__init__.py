"""Provisioning of a closed-won deal, in parts: plan, validate, steps, amend, options, result."""
