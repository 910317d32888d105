"""Hand-written queries for the demo world (not generated from its templates): plain class queries with
their class, and texts from outside the world. Used to check the app's examples, P@5 of plain queries
and the out-of-world notice; the issue's own, different sets are checked separately."""

# (query, class): every class, varied wording, colours/counts/positions the world uses
PLAIN = [
    ("a red star", "star"), ("three yellow stars", "star"), ("a big five-pointed star in the centre", "star"),
    ("small green star on a white background", "star"), ("a starburst shape", "star"),
    ("a pink heart", "heart"), ("two hearts", "heart"), ("a love heart at the bottom", "heart"),
    ("a large black heart symbol", "heart"), ("hearts scattered around the picture", "heart"),
    ("a blue circle", "circle"), ("two orange discs", "circle"), ("a round dot on the left", "circle"),
    ("a big white circle on a navy background", "circle"), ("a filled round shape", "circle"),
    ("a green square", "square"), ("three purple boxes", "square"), ("a small block in the top right corner", "square"),
    ("a large brown square", "square"), ("a square on a striped background", "square"),
    ("a yellow triangle", "triangle"), ("two red triangles", "triangle"), ("a three-sided shape", "triangle"),
    ("a triangle at the top", "triangle"), ("a big white triangle on a dark grey background", "triangle"),
    ("a blue cross", "cross"), ("a plus sign", "cross"), ("three black crosses", "cross"),
    ("a large pink plus shape on the right", "cross"), ("a cross in the bottom left corner", "cross"),
    ("an orange crescent", "crescent"), ("a crescent moon", "crescent"), ("two white moon shapes", "crescent"),
    ("a small crescent at the bottom", "crescent"), ("a big purple crescent on a cream background", "crescent"),
    ("a green hexagon", "hexagon"), ("a hex shape", "hexagon"), ("three red hexagons", "hexagon"),
    ("a large hexagon in the centre", "hexagon"), ("a six-sided figure", "hexagon"),
    ("a blue ring", "ring"), ("a hoop", "ring"), ("two yellow donut shapes", "ring"),
    ("a hollow round outline", "ring"), ("a big black ring on a pale green background", "ring"),
    ("a red arrow", "arrow"), ("an arrow sign", "arrow"), ("two blue pointers", "arrow"),
    ("a large white arrow on the left", "arrow"), ("a small arrow in the top left corner", "arrow"),
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
