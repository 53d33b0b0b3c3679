"""Static files storage: whitenoise's compressed manifest storage, aware of ES module imports."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Rewrite `import ... from "./feed.js";` in JS modules to the hashed name as well.

    Without it game.<hash>.js would import the unhashed feed.js, which is not cached
    forever and may come from another deploy than the page's game.js.
    """

    support_js_module_import_aggregation = True
