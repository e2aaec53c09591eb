# dlqadmin application image: web (daphne), Celery worker and beat, harvester.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=dlqadmin.settings
WORKDIR /app

RUN useradd --create-home --uid 1000 dlqadmin
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=true python manage.py collectstatic --noinput >/dev/null

USER dlqadmin
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "dlqadmin.asgi:application"]
