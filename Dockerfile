# ChatTalk web process. Build: docker build -t chattalk .   Run: docker run -p 8000:8000 -e SECRET_KEY=... \
#   -e DATABASE_URL=postgres://... -e REDIS_URL=redis://... chattalk
# The relay is the same image with another command: python manage.py relay_events
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=chattalk_project.settings \
    DEBUG=0 \
    PYTHON=python \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs a SECRET_KEY to import settings with DEBUG off; this one never serves a request.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && useradd --create-home --uid 10001 chattalk \
    && chown -R chattalk:chattalk /app

USER chattalk
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
# Migrations run as a separate release step (python manage.py migrate), not on every start of every worker.
# The one server command (scripts/serve); behind a balancer, name it: -e TRUSTED_PROXIES=10.0.0.0/8 (say), or
# every client is counted as the balancer's address by the login and signup limits.
CMD ["./scripts/serve", "0.0.0.0", "8000"]
