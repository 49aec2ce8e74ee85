"""`image_prune`: remove the dangling images (no tag names them) the user owns.

The host decides ownership as it does for `image_remove`: the image list a
plugin gets holds only the images the submitting user may see (an admin sees
all), and each removal is checked again. An image a container still uses
is kept and logged, not an error. `dry_run: true` lists what would go.
"""

import stevedore_sdk as sdk
from wit_world.imports import images

# What a runtime reports for an image that no tag names.
NO_TAG = "<none>:<none>"


def dangling(info):
    """Whether no tag names the image."""
    return all(t == NO_TAG or t.endswith(":<none>") for t in info.tags)


class ImagePrune(sdk.Category):
    NAME = "image_prune"
    SUMMARY = "Remove the dangling images you own (dry_run lists them)"
    DELETABLE = True
    PARAMS_SCHEMA = {
        "type": "object",
        "properties": {
            "type": {
                "description": "The runtime whose images are pruned.",
                "enum": ["docker", "lxc"],
                "default": "docker",
            },
            "dry_run": {
                "description": "List what would be removed, remove nothing.",
                "type": "boolean",
                "default": False,
            },
        },
        "additionalProperties": False,
    }

    def run(self, params):
        kind = sdk.RuntimeKind.LXC if params["type"] == "lxc" else sdk.RuntimeKind.DOCKER
        found = [i for i in sdk.call(images.list, kind) if dangling(i)]
        if params["dry_run"]:
            for i in found:
                sdk.info(f"would remove {i.id} ({i.size} bytes)")
            sdk.progress(100, "dry run")
            return f"would remove {len(found)}: " + ", ".join(i.id for i in found)
        removed, kept, freed = [], [], 0
        for n, i in enumerate(found):
            sdk.check_cancelled()
            sdk.progress(n * 100 // len(found), f"removing {i.id}")
            try:
                sdk.call(images.remove, kind, i.id, False)
            except (sdk.Conflict, sdk.Denied, sdk.NotFound, sdk.RuntimeFailed) as e:
                # In use by a container, someone else's, or gone meanwhile.
                sdk.warn(f"kept {i.id}: {e}")
                kept.append(i.id)
                continue
            removed.append(i.id)
            freed += i.size
        sdk.progress(100, "done")
        text = f"removed {len(removed)} ({freed} bytes)"
        if removed:
            text += ": " + ", ".join(removed)
        if kept:
            text += f"; kept {len(kept)}: " + ", ".join(kept)
        return text


Executor = sdk.executor(ImagePrune)
