"""``python -m cortex.services.neuron.worker``: one model worker (see runtime)."""

from cortex.services.neuron.worker.runtime import main

raise SystemExit(main())
