"""Pure domain types: enums, value objects, the job state machine. No I/O."""
