"""The periodic schedule run by Celery beat."""
BEAT_SCHEDULE: dict = {}
