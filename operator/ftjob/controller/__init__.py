"""The ftjob operator: kopf handlers over one reconcile, pure manifest builders and decisions."""
