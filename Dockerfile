FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 PORT=8000

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-compile -r requirements.txt

COPY proxy/ proxy/
COPY providers/ providers/
COPY wsgi.py gunicorn.conf.py ./

RUN useradd --system --uid 10001 --home /app switchboard && chown -R switchboard /app
USER switchboard

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/health', timeout=2)"

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
