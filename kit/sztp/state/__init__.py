"""Desired state: the admin resources, their rules, and plan/apply between two states."""
