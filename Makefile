.PHONY: run test services lint schemas
run:
	./scripts/run
test:
	./scripts/test
services:
	./scripts/services.sh start
lint:
	.venv/bin/ruff check .
schemas:
	.venv/bin/python manage.py export_schemas
