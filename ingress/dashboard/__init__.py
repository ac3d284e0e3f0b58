"""The dashboard at /dashboard: live charts and the request view, for gateway and tenant admins."""
