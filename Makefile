# The two commands of the README, plus the default model's recipe.
.PHONY: serve test default-model

serve:  ## install the serving dependencies and serve models/ (the shipped default model); ARGS="--port 9000"
	bash scripts/serve.sh $(ARGS)

test:  ## install everything the tests need (Debian's Fashion-MNIST, torch CPU, extras) and run them
	bash scripts/test.sh

default-model:  ## train, evaluate (K=5000) and export models/fashion-mnist/
	.venv/bin/python -m training pipeline --config configs/fashion-mnist.toml --k 5000 --name fashion-mnist \
		--description "MLP VAE (1024-512, 32 latents), Gaussian likelihood with learned sigma, Fashion-MNIST" \
		--direction tops-to-dresses=t-shirt/top:dress --direction "sneakers-to-boots=sneaker:ankle boot"
