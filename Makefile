# The two commands of the README, plus the default model's recipe and the scale-out targets (docs/deploy.md).
.PHONY: serve test default-model bench model-cards serve-ray test-containers

serve:  ## install the serving dependencies and serve models/ (the shipped default model); ARGS="--port 9000"
	bash scripts/serve.sh $(ARGS)

test:  ## install everything the tests need (Debian's Fashion-MNIST, torch CPU, extras) and run them
	bash scripts/test.sh

default-model:  ## train, evaluate (K=5000) and export models/fashion-mnist/
	.venv/bin/python -m training pipeline --config configs/fashion-mnist.toml --k 5000 --name fashion-mnist \
		--description "MLP VAE (1024-512, 32 latents), Gaussian likelihood with learned sigma, Fashion-MNIST" \
		--direction tops-to-dresses=t-shirt/top:dress --direction "sneakers-to-boots=sneaker:ankle boot"

serve-ray:  ## install the ray extra and serve models/ on Ray Serve (deploy/ray/config.yaml, port 8000)
	bash scripts/serve-ray.sh $(ARGS)

test-containers:  ## as root: install the Docker engine, build the CPU image on a Debian base, run it with compose, call it
	bash scripts/test-containers.sh

bench:  ## the performance benchmarks (after make test): service vs plain server vs bare session, then training
	command -v wrk >/dev/null || apt-get install -y wrk
	.venv/bin/python benchmarks/run.py $(ARGS)
	.venv/bin/python benchmarks/scale.py --ray

model-cards:  ## docs/models.md: sample quality and convergence of every shipped model, then one card each (~40 min)
	.venv/bin/python benchmarks/sample_quality.py
	.venv/bin/python benchmarks/convergence.py --images 1000
	.venv/bin/python benchmarks/model_cards.py
