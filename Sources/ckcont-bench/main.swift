print("ckcont-bench: see Scripts/bench")
