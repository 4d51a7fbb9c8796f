"""The one delivery pipeline: plan, deliver, keep what failed, redeliver."""
