from sparsekit.cli import main

raise SystemExit(main())
