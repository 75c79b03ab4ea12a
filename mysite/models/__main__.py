"""``python -m mysite.models list|fetch``: the declared model files, and getting them."""

from mysite.models.files import main

raise SystemExit(main())
