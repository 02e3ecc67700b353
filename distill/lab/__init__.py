"""The lab: workflows built on the engine and the plugins (run, general distillation, sweeps, reports,
prediction, benchmarks and the command line). Nothing outside the lab imports it."""
