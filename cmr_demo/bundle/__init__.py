"""Bundles, the unit the app serves: the folder contract (`layout`), building one (`build`), checking it
(`verify`), loading it for serving (`load`), its model card (`card`) and its 2-D maps (`maps`);
`python -m cmr_demo.bundle build|verify|add-lab` (`command`)."""
