from poison_tui.cli import main

raise SystemExit(main())
