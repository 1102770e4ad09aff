"""Hardware-aware multi-stage architecture search (`edge search`) and the method's diagnostics
(`edge ablate`), on Optuna studies (samplers, pruners, SQLAlchemy storage). Needs the `search`
extra. The device cost (latency estimate, memory, parameters) comes in as a function, so this
package stays upstream of deploy/ (the CLI hands in deploy's latency model)."""
