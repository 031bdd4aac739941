"""The long-running service: cameras under supervision, systemd notification, health, metrics, status and logs."""
