from balans.cli import main

raise SystemExit(main())
