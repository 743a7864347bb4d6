"""Baseline web app: Flask endpoints that do no work, served by the same gunicorn command as Pawpost."""

from flask import Flask

app = Flask(__name__)


@app.post("/webhooks/twilio/<int:clinic_id>/status")
def twilio_status(clinic_id):
    """Return 200 at once: the most a status callback could cost under this server."""
    return "", 200


@app.get("/healthz")
def healthz():
    return "ok", 200
