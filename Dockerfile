# dlqadmin application image: web (daphne), Celery worker and beat, harvester.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=dlqadmin.settings
WORKDIR /app

RUN useradd --create-home --uid 1000 dlqadmin
# Runtime packages only (no demo/test brokers), every transitive version from requirements.lock.
COPY requirements.txt requirements.lock ./
RUN pip install --no-cache-dir -r requirements.txt -c requirements.lock && pip check
COPY . .
# collectstatic connects to no database, but the settings require a PostgreSQL URL to load.
RUN DEBUG=true DATABASE_URL=postgres://build@localhost/build python manage.py collectstatic --noinput >/dev/null

USER dlqadmin
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "dlqadmin.asgi:application"]
