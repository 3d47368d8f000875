"""The offline planner's words: the vocabulary its templates draw from.

Themes (roles, looks, places, details, styles), story arcs, shot types, camera moves,
names, narration lines, and the word lists that read an idea. Data only: changing a word
here changes every plan the offline planner makes.
"""

from __future__ import annotations

import re

#: Phrases stripped from the front of an idea to find what it is about.
_LEADING = re.compile(
    r"^(?:(?:a|an|the)\s+)?(?:(?:short\s+)?(?:film|story|tale|movie)\s+(?:about|of)\s+)?"
    r"(?:(?:the\s+)?(?:rise\s+and\s+fall|rise|fall|story|tale|legend|birth|death|end|"
    r"journey|return|last\s+days|secret)\s+of\s+)?",
    re.IGNORECASE,
)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_VERB_FOLLOWERS = {"a", "an", "the", "to", "his", "her", "their", "its", "my", "our", "that",
                   "how", "on", "in", "into", "with", "from", "for", "out", "up", "back"}
_PREPOSITIONS = {"of", "in", "on", "at", "for", "from", "with", "into", "to", "by", "and",
                 "or", "under", "over", "beyond", "after", "before", "like", "across", "through"}
_SMALL_WORDS = {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "with"}

#: Themes: keywords that select them, and the words templates draw from.
_THEMES: dict[str, dict[str, tuple[str, ...]]] = {
    "ancient": {
        "keywords": ("ancient", "city", "trade", "trading", "empire", "kingdom", "temple",
                     "pharaoh", "rome", "roman", "merchant", "market", "caravan", "king",
                     "queen", "medieval", "castle", "bronze", "desert", "silk"),
        "roles": ("a spice merchant", "a young harbour scribe", "an ageing queen",
                  "a caravan master", "a temple astronomer", "a mercenary captain",
                  "a glassblower's apprentice"),
        "looks": ("in an indigo robe with a brass-buckled satchel",
                  "with ink-stained fingers and a linen tunic",
                  "wearing a heavy gold collar and a faded crimson mantle",
                  "with a sun-darkened face and a dusty striped headwrap",
                  "in a patched leather cuirass, a scar across one cheek",
                  "with braided hair threaded with copper beads"),
        "places": ("the harbour quays", "the great market square", "the palace terraces",
                   "the caravan gate", "the temple steps", "the salt warehouses",
                   "the city walls at dusk", "the ruined colonnade"),
        "details": ("bolts of dyed silk", "stacked amphorae", "a bronze weighing scale",
                    "a cracked clay tablet", "sails crowding the harbour", "a column of camels",
                    "oil lamps in a narrow alley", "a toppled statue"),
        "styles": ("sun-bleached ochre and lapis palette, 35mm anamorphic, long golden-hour shadows, "
                   "drifting dust in the light, painterly epic realism",
                   "warm terracotta and teal palette, wide-angle lens, hazy desert light, "
                   "matte-painting grandeur, fine film grain",
                   "amber and deep indigo palette, low-angle compositions, oil-lamp glow, "
                   "classical history painting feel"),
    },
    "future": {
        "keywords": ("space", "star", "planet", "robot", "future", "android", "ai", "cyber",
                     "galaxy", "alien", "station", "mars", "moon", "ship", "orbit"),
        "roles": ("a station engineer", "a salvage pilot", "a maintenance android",
                  "a colony doctor", "a signal analyst", "a disgraced captain"),
        "looks": ("in a scuffed orange pressure suit", "with a cracked visor and a shaved head",
                  "with a pale ceramic face and one flickering eye",
                  "in a grey jumpsuit covered in mission patches",
                  "with cropped silver hair and a neural port behind one ear"),
        "places": ("the observation deck", "the docking ring", "the hydroponics bay",
                   "the control room", "the planet's frozen surface", "the dark corridor"),
        "details": ("blinking status lights", "a frosted viewport", "a drifting toolkit",
                    "a flickering hologram", "a dead console", "a distant blue planet"),
        "styles": ("cold cyan and sodium-orange palette, 40mm lens, volumetric haze, "
                   "practical lights, hard science-fiction realism",
                   "muted steel and emergency-red palette, wide lens, deep shadows, "
                   "retro-futurist production design, subtle film grain"),
    },
    "sea": {
        "keywords": ("sea", "ocean", "island", "boat", "sailor", "fisher", "fishing", "storm",
                     "lighthouse", "whale", "harbour", "harbor", "pirate", "coast", "river"),
        "roles": ("a lighthouse keeper", "a young fisher", "a retired sea captain",
                  "a cartographer", "a smuggler", "a net mender"),
        "looks": ("in a salt-stained oilskin coat", "with wind-knotted red hair and bare feet",
                  "with a white beard and a brass telescope",
                  "in a knitted blue sweater with rolled sleeves",
                  "with tattooed forearms and a gold earring"),
        "places": ("the lighthouse gallery", "the storm-lashed pier", "the fishing village",
                   "the open sea", "the sea cave", "the shingle beach at dawn"),
        "details": ("a swinging lantern", "coiled wet rope", "gulls over the swell",
                    "a half-sunk hull", "a bottle with a rolled map", "foam on black rocks"),
        "styles": ("slate grey and sea-green palette, 50mm lens, overcast soft light, "
                   "spray and mist, naturalistic seafaring drama",
                   "deep navy and lantern-gold palette, wide lens, storm light, "
                   "romantic maritime painting feel"),
    },
    "nature": {
        "keywords": ("forest", "mountain", "wolf", "bear", "bird", "tree", "garden", "river",
                     "snow", "winter", "spring", "animal", "wild", "valley", "fox"),
        "roles": ("a forest ranger", "a lone wolf", "a botanist", "a mountain guide",
                  "a child who talks to birds", "an old beekeeper"),
        "looks": ("in a moss-green parka with a worn map case", "with grey fur frosted white",
                  "with round spectacles and a canvas field bag",
                  "in a red wool hat and cracked climbing boots",
                  "with a straw hat and a veil pushed back"),
        "places": ("the old-growth forest", "the mountain pass", "the frozen lake",
                   "the valley meadow", "the ranger's cabin", "the ridge at first light"),
        "details": ("breath steaming in cold air", "pawprints in fresh snow", "a circling hawk",
                    "sunbeams through pine needles", "a swollen river", "wildflowers in wind"),
        "styles": ("deep pine green and frost white palette, telephoto lens, soft morning mist, "
                   "nature documentary realism",
                   "golden meadow and slate-blue palette, wide lens, backlit dawn light, "
                   "lyrical naturalism"),
    },
    "everyday": {
        "keywords": (),
        "roles": ("a night-shift nurse", "a retired teacher", "a street musician",
                  "a teenage inventor", "a baker", "a retired postman", "a widowed architect"),
        "looks": ("in a faded denim jacket with a canvas tote",
                  "with grey curls and reading glasses on a cord",
                  "in a yellow raincoat with headphones around the neck",
                  "with flour on the sleeves of a checked shirt",
                  "in a crisp navy uniform and scuffed shoes"),
        "places": ("a rain-wet street corner", "a small kitchen at dawn", "a crowded bus",
                   "a rooftop at sunset", "an empty workshop", "a city park in autumn"),
        "details": ("steam rising from a mug", "neon reflected in puddles",
                    "a handwritten note", "keys on a hook", "a flickering streetlight",
                    "leaves blowing across asphalt"),
        "styles": ("warm tungsten and cool blue palette, 35mm lens, shallow depth of field, "
                   "soft naturalistic light, intimate indie drama",
                   "muted pastel palette, 50mm lens, diffused window light, "
                   "gentle film grain, quiet observational style"),
    },
}

#: Story arcs: the beats scenes are built from, with a summary template per beat.
_ARCS: dict[str, tuple[tuple[str, str], ...]] = {
    "rise_and_fall": (
        ("origin", "{subject} begins as little more than a hope; {a} arrives at {place}."),
        ("rise", "Fortune turns: {subject} grows rich and loud, and {a} rises with it."),
        ("height", "At its height {subject} glitters, but {b} sees the first cracks."),
        ("fracture", "Greed and pride split {subject} apart; {a} and {b} choose opposite sides."),
        ("fall", "{subject} falls; {a} walks through what is left at {place}."),
    ),
    "journey": (
        ("departure", "{a} leaves {place}, carrying a promise about {subject}."),
        ("road", "The way is harder than expected; {a} meets {b}."),
        ("trial", "A storm of trouble tests them both at {place}."),
        ("discovery", "{a} finds the truth about {subject}."),
        ("return", "{a} comes home changed, and {place} looks different now."),
    ),
    "classic": (
        ("ordinary world", "At {place}, {a} lives an ordinary life, untouched by {subject}."),
        ("disturbance", "{subject} intrudes; {a} cannot ignore it."),
        ("struggle", "{a} and {b} clash over what to do at {place}."),
        ("turning point", "A single choice changes everything about {subject}."),
        ("resolution", "In the quiet after, {a} understands what {subject} meant."),
    ),
}

_SHOT_TYPES: tuple[tuple[str, str], ...] = (
    ("Sweeping aerial view of", "aerial establishing shot"),
    ("Wide shot of", "wide shot"),
    ("Medium shot:", "medium shot"),
    ("Close-up:", "close-up"),
    ("Low-angle shot of", "low-angle shot"),
    ("Silhouette against the sky:", "silhouette shot"),
    ("Detail insert:", "macro detail shot"),
)

#: Camera moves the kenburns renderer understands (see reelforge.plugins.kenburns).
CAMERA_MOVES: tuple[str, ...] = (
    "slow push in", "pull out", "pan left", "pan right", "tilt up", "tilt down",
)

_NAMES = ("Ilyana", "Tarek", "Mira", "Oskar", "Sefa", "Daro", "Nour", "Lio", "Amara",
          "Kasim", "Edda", "Ruy", "Zohra", "Bram", "Yael", "Teodor", "Ines", "Hollis")

_NEGATIVE = ("blurry, low resolution, watermark, text, logo, extra limbs, deformed hands, "
             "duplicate faces, oversaturated, jpeg artifacts")

#: Nouns that name a place: found in an idea, they become the film's home setting.
_PLACE_NOUNS = frozenset("""
lighthouse city town village harbour harbor port island forest woods jungle mountain mountains desert
station castle temple palace market bakery kitchen library school ship boat garden farm house cabin
hotel cafe café shop museum theatre theater observatory monastery mine river lake sea ocean coast
beach valley cave tower bridge street alley train bus hospital studio workshop factory prison church
planet moon mars orbit kingdom empire square pier quay quays cathedral fortress camp colony
""".split())
_COUNTS = {"two": 2, "three": 3, "twin": 2, "twins": 2}
_IRREGULAR = {"women": "woman", "men": "man", "children": "child", "people": "person", "wolves": "wolf",
              "thieves": "thief", "wives": "wife", "geese": "goose", "mice": "mouse"}

#: Places one is "on", not "at" or "in" (on Mars, on the island).
_ON_PLACES = frozenset(("mars", "venus", "jupiter", "saturn", "mercury", "the moon", "moon", "the island"))

#: Narration lines by what the shot shows (one is picked per shot, deterministically).
_LINES: dict[str, tuple[str, ...]] = {
    "person": ("{who} watches {detail}, and says nothing.",
               "{who} has seen {detail} before, but never like this.",
               "For {who}, {place} has never felt so small.",
               "{who} knows that {subject} will not wait."),
    "detail": ("{Detail}: the smallest sign of what is coming.",
               "Even {detail} seems to know what {subject} means now.",
               "Nobody else notices {detail}."),
    "place": ("{Place} holds its breath.",
              "Around {place}, the light begins to change.",
              "Here, {subject} is all anyone talks about."),
}

# -- reading a sentence idea (offline_premise) and telling it (offline_action) ---------------

#: Common verbs in their base form: with a plural subject ('Two sisters open ...') they are
#: how the planner finds the verb.
_COMMON_VERBS = frozenset("""
accept adopt answer arrive ask attack awaken bake become befriend begin believe betray bring build burn buy
call carry catch change chase choose clean climb collect come compose cook count cross cry cure dance dare
decide defend deliver design destroy die dig discover dive draw dream drive eat enter escape explore face fall
fear feed fight find finish fix flee fly follow forget forgive fall gather give go grow guard hear help hide hold
hunt invent investigate join keep kill kiss knit know lead learn leave lift listen live lose love make meet mend
miss move need open organise organize paint perform plan plant play protect pull race raise read rebuild remember
repair rescue restore return ride rise run save search see seek sell send sew share sing sit sleep solve speak
start steal stop survive swim take talk teach tell tend think throw train travel try turn uncover visit wait wake
walk wander want watch weave win wish work write
""".split())
#: Verbs that say what someone wants: the action is what follows ('wants to fly' -> fly).
_WISH_VERBS = frozenset(("want", "wish", "hope", "try", "need", "dream", "decide", "plan", "long", "yearn",
                         "dare", "struggle", "refuse", "attempt", "set", "vow", "promise"))
#: Words that make a phrase a time ('at dawn', 'in nineteenth-century Prague', 'during the war').
_TIME_WORDS = frozenset("""
dawn dusk sunrise sunset night midnight noon morning evening afternoon twilight winter summer autumn fall spring
century centuries year years decade age era war future past christmas eve holiday holidays festival season rain
snow blizzard fog monsoon heatwave blackout eclipse storm flood plague revolution wartime
""".split())
#: Props an action suggests ('paint' -> brushes): the details of a film about it.
_VERB_PROPS: dict[str, tuple[str, ...]] = {
    "paint": ("a brush drying in a jar", "wet colour on a canvas", "paint on a fingertip"),
    "draw": ("a pencil sketch", "charcoal on rough paper"),
    "bake": ("flour on a wooden table", "bread cooling in a tray"),
    "cook": ("a pot steaming on the stove", "chopped herbs on a board"),
    "write": ("a page of careful handwriting", "a pen by a blank page"),
    "sing": ("an old microphone", "a folded song sheet"),
    "dance": ("worn dancing shoes", "a shadow turning on the floor"),
    "play": ("an instrument case, open", "fingers on the strings"),
    "build": ("tools laid out in a row", "a half-built frame"),
    "repair": ("tools laid out in a row", "a loose screw"),
    "fix": ("tools laid out in a row", "a loose screw"),
    "fly": ("a feather lifted by the wind", "a kite line pulled tight"),
    "swim": ("water rippling", "a towel left on a rail"),
    "read": ("an open book", "a stack of old books"),
    "garden": ("seedlings in pots", "soil on bare hands"),
    "plant": ("seedlings in pots", "soil on bare hands"),
    "open": ("a sign turned to 'open'", "a key in a new lock"),
    "find": ("a clue half hidden", "a torn map"),
    "search": ("a clue half hidden", "a torn map"),
    "befriend": ("two shadows side by side", "an offered hand"),
    "run": ("running shoes on a step", "a finish line of string"),
    "sail": ("a sail filling with wind", "coiled rope on a deck"),
}
#: Props a noun in the idea suggests ('a storm' -> rain on glass).
_NOUN_PROPS: dict[str, tuple[str, ...]] = {
    "storm": ("rain lashing the glass", "lightning over dark water"),
    "bakery": ("loaves in the window", "a flour-dusted counter"),
    "clock": ("brass gears on a bench", "a pocket watch ticking"),
    "clockmaker": ("brass gears on a bench", "a pocket watch ticking"),
    "bird": ("a feather on the sill", "a small cage, open"),
    "garden": ("seedlings in pots", "a watering can"),
    "library": ("shelves of old books", "a reading lamp"),
    "ship": ("a sail filling with wind", "coiled rope on a deck"),
    "boat": ("oars resting on the water", "a wet rope"),
    "robot": ("a small servo whirring", "a glowing eye"),
    "violin": ("a violin case, open", "rosin dust on the strings"),
    "piano": ("a piano lid, open", "sheet music"),
    "letter": ("an envelope, unopened", "a stamp on a letter"),
    "map": ("a folded map", "a compass on a table"),
    "dragon": ("a scale glinting in the dark", "smoke curling from a cave"),
    "ghost": ("a curtain stirring with no wind", "a cold breath on glass"),
    "whale": ("a tail rising from the water", "spray against the sky"),
    "bottle": ("a bottle with a rolled message", "a cork bobbing"),
}
#: Details any film can show, whatever its place and time.
_NEUTRAL_DETAILS = ("a hand that hesitates", "a door left ajar", "a long shadow", "footprints",
                    "a window catching the light", "a cup gone cold", "a worn notebook")
#: Looks for protagonists that are not people.
_NONHUMAN_LOOKS: dict[str, tuple[str, ...]] = {
    "robot": ("with a pale ceramic face and one flickering eye", "with dented steel plates and patient blue eyes"),
    "android": ("with a pale ceramic face and one flickering eye", "with seamless white skin and a humming voice"),
    "wolf": ("with grey fur frosted white", "with a torn ear and amber eyes"),
    "fox": ("with a russet coat and a white-tipped tail",),
    "cat": ("with a striped coat and one white paw",),
    "dog": ("with a shaggy coat and a wagging tail",),
    "bear": ("with a heavy brown coat",),
    "ghost": ("pale and half-transparent, in old-fashioned clothes",),
    "dragon": ("with green scales and smoking nostrils",),
    "bird": ("with bright feathers and a quick eye",),
}
#: Homes for an idea that names no place: where its action happens ('paint' -> a studio).
_VERB_HOMES: dict[str, str] = {
    "paint": "a small studio", "draw": "a small studio", "bake": "a small kitchen", "cook": "a small kitchen",
    "write": "a writing desk", "sing": "a small stage", "dance": "a dance hall", "swim": "the water",
    "sail": "the open water", "fly": "the open sky", "read": "a library", "garden": "a garden",
    "plant": "a garden", "repair": "a workshop", "fix": "a workshop",
    "teach": "a classroom", "learn": "a classroom", "play": "a small stage", "climb": "a steep hillside",
}
_NEUTRAL_HOMES = ("home", "a quiet street", "an empty room")
#: Places for a subject idea that names none and fits no theme.
_PLAIN_PLACES = ("a quiet street", "an empty room", "an open window", "a small house")
#: The story of a sentence idea: its protagonist wants the action, fails, doubts, finds a way, does it.
_ACTION_BEATS: tuple[tuple[str, str], ...] = (
    ("the wish", "{At}, {a} {want}."),
    ("the first try", "{a} {tries} to {act} for the first time and {fails}; {b} is watching."),
    ("doubt", "{B} says {a} will never {act}; {a} almost {gives} up."),
    ("another way", "{a} {finds} another way to {act}; {b} begins to believe."),
    ("done", "At last, {a} {does}."),
)
#: Narration lines of a sentence idea by what the shot shows.
_ACTION_LINES: dict[str, tuple[str, ...]] = {
    "person": ("For {who}, {doing} is everything now.",
               "{who} {tries} again, and again.",
               "{who} has never wanted anything more.",
               "{who} does not give up on {doing}."),
    "other": ("{who} watches, and says nothing.",
              "{who} is not sure it can be done.",
              "{who} has seen people try this before."),
    "detail": ("{Detail}: one small step.",
               "Even {detail} seems to wait.",
               "Nobody else notices {detail}."),
    "place": ("{Place} holds its breath.",
              "Around {place}, the light begins to change.",
              "Here, everything is about {doing}."),
}


def singular(word: str) -> str:
    """A plural noun's singular, by English spelling rules and a few irregulars ('bus' and
    'Icarus' stay as they are)."""
    low = word.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if low.endswith("ies") and len(low) > 4:
        return word[:-3] + "y"
    if low.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if low.endswith("s") and not low.endswith(("ss", "us", "is")):
        return word[:-1]
    return word
