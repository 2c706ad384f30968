"""Canonical class lists (class id = list index) of the registered benchmarks, with their sources.

Sources: docs/datasets.md and the ``notes`` of each spec in :mod:`orchestrator.benchmarks.registry`.
"""
from __future__ import annotations

CHOLEC80_PHASES = ["Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection",
                   "GallbladderPackaging", "CleaningCoagulation", "GallbladderRetraction"]
M2CAI16_PHASES = ["TrocarPlacement", *CHOLEC80_PHASES]
AUTOLAPARO_PHASES = ["Preparation", "Dividing Ligament and Peritoneum", "Dividing Uterine Vessels and Ligament",
                     "Transecting the Vagina", "Specimen Removal", "Suturing", "Washing"]
EGOSURGERY_PHASES = ["disinfection", "design", "anesthesia", "incision", "dissection", "hemostasis", "irrigation",
                     "closure", "dressing"]
PITVIS_STEPS = ["nasal corridor creation", "anterior sphenoidotomy", "septum displacement",
                "sphenoid sinus clearance", "sellotomy", "durotomy", "tumour excision", "haemostasis",
                "synthetic graft placement", "fat graft placement", "dural sealant", "debris clearance"]
OPHNET_PHASES = [
    "Viscoelastic Injection", "Nuclear Management (for cataract surgery)", "Step Interval", "Non-functional Segment",
    "Intraocular Lens Implantation", "Incision Closure", "Corneal Incision Creation", "Capsulorhexis",
    "Cortex Aspiration", "Recipient Corneal Bed Preparation", "Anterior Chamber Injection/Washing",
    "Viscoelastic Aspiration", "Capsular Membrane Staining", "Corneal Graft Suturing",
    "Viscoelastic Application on Cornea", "Corneal-Scleral Tunnel Creation", "Swab Wiping",
    "Conjunctival Incision Creation", "Anterior Chamber Gas Injection", "Ocular Surface Irrigation",
    "Surgical Marking", "Subconjunctival Drug Injection", "Donor Corneal Graft Preparation", "Scleral Hemostasis",
    "Corneal Interlamellar Injection", "Drainage Tube Implantation", "Use of Iris Expander",
    "Drainage Device Preparation", "Scleral Flap Creation", "Anterior Chamber Washing", "Suspension Suture",
    "Drainage Device Implantation", "Intraoperative Gonioscopy Application", "Corneal Measurement",
    "Scleral Flap Suturing", "Scleral Tunnel Creation", "Placement of Bandage Contact Lens", "Peripheral Iridectomy",
    "Anterior Chamber Drainage Device Implantation", "Antimetabolite Application",
    "Scleral Support Ring Manipulation", "Deep Sclerectomy", "Anterior Vitrectomy", "Placement of Eyelid Speculum",
    "Hooking of Extraocular Muscle", "Observation of Corneal Astigmatism", "Pupil Dilation",
    "Iris Prolapse Management", "Measurement on the Scleral", "Goniotomy", "Trabeculectomy",
    "Instrument Fabrication", "Capsular Tension Ring Implantation",
    "Femtosecond Laser-Assisted Corneal Transplantation", "Removal of Pupillary/Iris Fibrosis Membrane",
    "Allograft/Biological Tissue Trimming", "Corneal Suture Removal", "Iris Synechiae Separation",
    "Placement of Sponge on Cornea", "Femtosecond Laser-Assisted Cataract Surgery", "Astigmatism Axis Gauge",
    "Microcatheter Insertion into Trabecular Meshwork", "Sub-Iris Exploration", "Artificial Cornea Manipulation",
    "Scleral Puncture/Incision", "Astigmatic Keratotomy", "Scleral Fixation of Intraocular Lens",
    "Removal of Fascia Tissue", "Canthotomy", "Removal of Lens Fibrotic Membrane",
    "Amniotic Membrane Transplantation", "Pupilloplasty", "Anterior Chamber Irrigation", "Sub-Tenon Injection",
    "Sclerectomy", "Corneal Interlamellar Irrigation", "Cyclophotocoagulation", "Drainage Device Adjustment",
    "Schlemm's Canal Inner Wall Removal", "Scleral Flap Incision Inspection", "Lens Extraction",
    "Anterior Chamber Vitreous Cleaning", "Intraocular Lens Removal", "Pterygium Excision", "Scleral Suture",
    "Drainage Tube Removal", "Suture Trimming", "Conjunctival Vessel Examination",
    "Special Puncture Knife Traversing the Anterior Chamber", "Removal of Object from Anterior Chamber",
    "Anterior Chamber Inspection", "Iris Repositioning", "Suprachoroidal Space Separation",
    "Scleral Flap Embedding in the Suprachoroidal Space", "Vitreoretinal Surgery", "Conjunctival Trimming",
]
PMLR50_PHASES = ["Preparation", "Knotting of the Foley catheter", "Procedure of the liver resection",
                 "Release of the Foley catheter", "Postprocessing"]
SA160_ACTIONS = ["abdominal access", "injection", "cutting", "blunt dissection", "thermal dissection", "irrigation",
                 "coagulation", "suction", "needle positioning", "needle puncture", "knot pushing", "knotting",
                 "thread cut", "sling-in", "endobag-in", "endobag-out"]
AVOS_ACTIONS = ["cutting", "tying", "suturing", "background"]
CHOLECT50_TRIPLETS = [f"triplet_{k:02d}" for k in range(100)]
