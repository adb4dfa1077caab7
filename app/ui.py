"""The CAST Explorer UI: the tabs, the shared model catalog and downloads, per-page defaults."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import gradio as gr

from cast.errors import CastError

from .collection_tab import build_collection_tab
from .config import AppConfig
from .downloads import DownloadManager
from .explore_tab import build_explore_tab, page_load_updates
from .jobs import JobQueue, JobService
from .jobs_tab import build_jobs_tab
from .memory import SessionMemory
from .models import ModelCatalog
from .owners import Visitors
from .naming_panel import NamingService

log = logging.getLogger(__name__)


def build_catalog(config: AppConfig) -> ModelCatalog:
    """The app's model catalog: the checkpoints folder, the extra model folders, one download manager."""
    return ModelCatalog(config.checkpoints_dir, cache_size=config.model_cache_size, downloads=DownloadManager(),
                        extra_dirs=config.model_dirs)  # fmt: skip


def build_app(config: AppConfig | None = None, *, background_download: bool = True,
              catalog: ModelCatalog | None = None, collections: Sequence[Path] = ()) -> gr.Blocks:
    """The CAST Explorer UI. Models are cached in an explicit catalog shared by all sessions.

    The default model is decided at once (never waiting for a download, see ModelCatalog.choose_default);
    each page load asks again, so sessions started after a background download get the official model.
    """
    config = config or AppConfig.from_env()
    catalog = catalog or build_catalog(config)
    default_key = catalog.choose_default(background_download=background_download)
    try:
        catalog.load(default_key)  # load and warm up the default model before the first user arrives
    except CastError as err:  # the UI still starts and says so; another model can be chosen
        log.error("could not load the default model %s: %s", default_key, err)

    memory = SessionMemory(config.session_memory_bytes())  # every session's results, one budget
    jobs = JobService(JobQueue(config.jobs_dir, limits=config.job_limits()), catalog, config)
    naming = NamingService(config)  # CLIP is loaded on the first naming request, never at start-up

    # hosted: Gradio's own copies of uploads and outputs are deleted when older than the scratch time to live
    ttl = int(config.limits.scratch_ttl_hours * 3600)
    with gr.Blocks(title="CAST Explorer", delete_cache=(max(60, ttl // 4), ttl) if config.hosted else None) as demo:
        # this browser's jobs and models: a token signed by the server, checked on every request
        keys = config.visitor_keys()
        visitors = Visitors(gr.BrowserState("", storage_key="cast-explorer-owner", secret=keys.browser_state_secret()),
                            keys)
        gr.Markdown("# CAST Explorer\nHierarchical segments learned by CAST (Ke, Mo, Yu, ICLR 2024): "
                    "superpixels → 64 → 32 → 16 → 8 segments from one forward pass.")
        gr.Markdown(config.mode_banner(), elem_id="mode")
        with gr.Tabs() as tabs:
            with gr.Tab("Explore", id="explore"):
                explore = build_explore_tab(catalog, config, default_key, visitors, memory, naming=naming)
            with gr.Tab("Collection", id="collection"):
                build_collection_tab(catalog, config, explore, visitors, tabs, demo, collections, naming=naming)
            with gr.Tab("Fine-tune", id="finetune"):
                build_jobs_tab(jobs, [explore.model_in, explore.compare_model], visitors)
        demo.load(keys.issue, [visitors.state], [visitors.state], api_visibility="private")
        demo.load(lambda: page_load_updates(catalog), None,
                  [explore.model_in, explore.model_key_state, explore.compare_model, explore.status,
                   explore.downloads_md, explore.download_timer], api_visibility="private")
    return demo
