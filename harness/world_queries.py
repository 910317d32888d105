"""Hand-written queries for the default world (`webshapes`) (not generated from its templates): plain class queries with
their class, and texts from outside the world. Used to check the app's examples, P@5 of plain queries
and the out-of-world notice; the issue's own, different sets are checked separately."""
import numpy as np

from cmr_demo.ui.bundle_texts import text_examples


# (query, class): every class of the default world (a shape in a colour), varied wording, counts, sizes and places
PLAIN = [
    ("a red star", "red star"), ("three yellow stars", "yellow star"),
    ("a big green star in the centre", "green star"), ("a small blue five-pointed star", "blue star"),
    ("two red stars on a striped background", "red star"), ("a red heart", "red heart"),
    ("two yellow hearts", "yellow heart"), ("a green love heart at the bottom", "green heart"),
    ("a large blue heart symbol", "blue heart"), ("blue hearts scattered around the picture", "blue heart"),
    ("a red circle", "red circle"), ("two yellow discs", "yellow circle"),
    ("a green round dot on the left", "green circle"), ("a big blue circle on a white background", "blue circle"),
    ("a red square", "red square"), ("three yellow boxes", "yellow square"),
    ('a small green block in the top right corner', 'green square'), ("a large blue square", "blue square"),
    ("a red triangle", "red triangle"), ("two yellow triangles", "yellow triangle"),
    ('a green three-sided shape', 'green triangle'), ("a blue triangle at the top", "blue triangle"),
    ("a red cross", "red cross"), ("a yellow plus sign", "yellow cross"), ("three green crosses", "green cross"),
    ("a large blue plus shape on the right", "blue cross"), ("a red crescent", "red crescent"),
    ("a yellow crescent moon", "yellow crescent"), ('two green moon shapes', 'green crescent'),
    ("a small blue crescent at the bottom", "blue crescent"), ("a red hexagon", "red hexagon"),
    ("a yellow hex shape", "yellow hexagon"), ("three green hexagons", "green hexagon"),
    ("a large blue hexagon in the centre", "blue hexagon"), ("a red ring", "red ring"),
    ("a yellow hoop", "yellow ring"), ("two green donut shapes", "green ring"),
    ("a big blue ring on a dark background", "blue ring"), ("a red arrow", "red arrow"),
    ("a yellow arrow sign", "yellow arrow"), ("two green pointers", "green arrow"),
    ("a small blue arrow in the top left corner", "blue arrow"),
]

# texts that describe nothing in the world of coloured shapes
OUT_OF_WORLD = [
    "a dog", "zxqv blorp", "a cat sleeping on a sofa", "the stock market fell sharply today",
    "a photo of a car parked in the street", "mountains at sunset", "a bowl of ramen with chopsticks",
    "quantum chromodynamics lecture notes", "def main(): return 0", "1234567890", "SELECT * FROM users;",
    "un chien noir dans le jardin", "ein Fahrrad an der Wand", "a man riding a horse on the beach",
    "the president gave a speech", "how do I reset my password", "a plate of spaghetti",
    "aaaaaaaaaaaaaaaaaaaa", "!!!???", "a skyscraper in new york", "an elephant drinking water",
    "a laptop on a wooden desk", "kjhg wqer poiu", "fresh strawberries in a basket",
    "a football match in a stadium", "a child flying a kite", "the weather will be rainy tomorrow",
    "a guitar leaning against an amp", "lorem ipsum dolor sit amet", "a portrait of an old woman",
    "traffic jam on the highway", "a sailing boat on the lake", "chocolate cake with candles",
    "an x-ray of a broken arm", "satellite image of a city", "a penguin on the ice",
    "a bottle of wine and two glasses", "a rocket launching into space", "the french revolution",
    "a microscope image of bacteria", "a tree covered in snow", "a bride and groom",
    "electric guitar solo", "a horse", "a bird", "a banana", "hello world", "please help",
    "the theory of relativity", "a dinosaur skeleton in a museum", "green tea",
]


IMAGE_EXAMPLES = range(0, 60, 6)  # the gallery rows app.py offers as image examples


def measure(service) -> dict:
    """How the service answers these sets under its best objective: P@5 and the predicted class of the plain
    queries, out-of-world misses and false alarms, and whether each example (text and picture) finds its class in
    the top 5 (bench/demo_queries.py records it; tests/test_demo_bundle.py holds it to its goals)."""
    best = service.best
    plain = [(q, c, service.search(service.text_query(q, c), best, 5)) for q, c in PLAIN]
    p5 = [r.p_at_k["5"] for _, _, r in plain]
    right = [r.info.predicted_class == c for _, c, r in plain]
    false_alarms = [q for q, _, r in plain if r.info.in_domain is False]
    misses = [q for q in OUT_OF_WORLD if service.query_info(service.text_query(q), best).in_domain]
    examples = {t: c in [h.class_name for h in service.search(service.text_query(t), best, 5).hits]
                for t, c in text_examples(service)}
    images = {}
    for row in IMAGE_EXAMPLES:
        hits = service.search(service.image_query(str(service.bundle.image_path(row))), best, 5).hits
        images[service.bundle.items[row]["id"]] = service.class_names[service.bundle.labels[row]] in [
            h.class_name for h in hits
        ]
    return {"objective": best, "plain_queries": len(plain), "out_of_world_queries": len(OUT_OF_WORLD),
            "mean_p_at_5": float(np.mean(p5)), "predicted_class_accuracy": float(np.mean(right)),
            "worst_p_at_5": sorted([(float(p), q) for p, (q, _, _) in zip(p5, plain)])[:5],
            "false_alarms": false_alarms, "misses": misses, "text_examples_top5": examples,
            "image_examples_top5": images}
