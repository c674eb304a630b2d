from claw_tui.cli import main

raise SystemExit(main())
