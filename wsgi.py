"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""
from dotenv import load_dotenv

load_dotenv()  # .env if present; real environment variables win

from proxy.app import create_app  # noqa: E402

app = create_app()
