.PHONY: run test services lint
run:
	./scripts/run
test:
	./scripts/test
services:
	./scripts/services.sh start
lint:
	.venv/bin/ruff check .
