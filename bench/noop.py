"""The baseline job: RQ's own per-job work with nothing inside it."""


def noop(number):
    """Return at once; the baseline measures what RQ itself costs per job."""
    return None
