.PHONY: demo test bench lint

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && scripts/typecheck.sh
