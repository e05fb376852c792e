import sys

# Guarded, import included: the checkpoint uploader is a spawned process, which imports this
# module again as __mp_main__ and must not pay for importing torch and transformers.
if __name__ == "__main__":
    from ftjob_trainer.train import main

    sys.exit(main())
