"""`python -m vae_client`: the command line (cli.py), as the `vae-client` script."""

from vae_client.cli import main

raise SystemExit(main())
