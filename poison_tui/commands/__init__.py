"""One module per subcommand. Each defines ``register(subparsers)``; cli.py discovers them.

A handler is set with ``parser.set_defaults(handler=fn)`` where ``fn(args) -> int`` is the exit
code. Import heavy modules (torch, transformers, textual) inside the handler, so that
``poison-tui --help`` stays instant.
"""
