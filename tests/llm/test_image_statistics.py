import io

from PIL import Image

from mllmrec_pyg.llm.backends import GenerationRequest, ImageStatisticsDescriber


def png(image):
    buffer = io.BytesIO()
    image.save(buffer, format='PNG')
    return buffer.getvalue()


def test_image_statistics_text():
    describer = ImageStatisticsDescriber()
    assert not describer.is_llm and describer.supports_images
    assert str(describer) == \
        'ImageStatisticsDescriber(top_colours=3, not_an_llm=True)'
    red = png(Image.new('RGB', (4, 2), (200, 20, 20)))
    assert describer.generate(GenerationRequest('ignored', red)).text == (
        'Image statistics (not an MLLM description): a landscape 4x2 image, '
        'dark overall (brightness 0.31); dominant colours: red 100%.')
    checker = Image.new('RGB', (2, 2), (255, 255, 255))
    checker.putpixel((0, 0), (0, 0, 0))
    assert describer.describe(png(checker)) == (
        'Image statistics (not an MLLM description): a square 2x2 image, '
        'bright overall (brightness 0.75); dominant colours: white 75%, '
        'black 25%.')
    assert describer.identity() == {
        'backend': 'image-stats', 'model': 'image-statistics-v1',
        'params': {'top_colours': 3, 'thumbnail': 64}}


def test_no_image_is_a_failure():
    outcomes = {}
    ImageStatisticsDescriber().generate_many([GenerationRequest('p')],
                                             outcomes.__setitem__)
    assert 'needs an image' in str(outcomes[0])
